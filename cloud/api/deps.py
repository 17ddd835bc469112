"""FastAPI dependencies shared by every router: the database, settings and who is calling.

Routers declare access with ``Depends(require_ops("admin"))`` or ``Depends(require_pos())``;
store-scoped routers call ``caller.check_store(store)`` for stores named in a body.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from storelens.cloud.api import principals as auth
from storelens.cloud.commerce import visit_sales
from storelens.cloud.db import Database
from storelens.cloud.hooks import Hooks
from storelens.cloud.services import Services
from storelens.cloud.settings import Settings
from storelens.pseudonym import PseudonymError, PseudonymKey

bearer = HTTPBearer(auto_error=False, description="Ops login token or POS device token.")
_bearer = bearer  # the earlier private name, still used by other routers


def get_db(request: Request) -> Database:
    return request.app.state.db


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_sale_link(settings: Settings = Depends(get_settings)) -> visit_sales.LinkWindows:
    """The service's sale-to-visit linking windows (``STORELENS_SALE_LINK_*``)."""
    return visit_sales.LinkWindows.from_settings(settings)


def get_services(request: Request) -> Services:
    """The app's composition root (built by `create_app`)."""
    return request.app.state.services


def get_hooks(services: Services = Depends(get_services)) -> Hooks:
    """The app's event hooks, for the service functions that run them."""
    return services.hooks


def get_pseudonym_key(settings: Settings = Depends(get_settings)) -> PseudonymKey:
    """The member-card key; 503 when the service was started without one."""
    try:
        return settings.pseudonym_key
    except PseudonymError as exc:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE, f"member cards are not configured: {exc}"
        ) from None


def current_principal(
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    db: Database = Depends(get_db),
) -> auth.Principal:
    if credentials is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "missing bearer token", {"WWW-Authenticate": "Bearer"}
        )
    principal = auth.authenticate(db, credentials.credentials)
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid or expired token", {"WWW-Authenticate": "Bearer"}
        )
    return principal


@dataclass(frozen=True)
class Caller:
    """An authenticated caller; ``store`` is the only store it may act for (None = any)."""

    principal: auth.Principal
    store: str | None

    @property
    def is_pos(self) -> bool:
        return self.principal.kind == "pos"

    @property
    def scope(self) -> tuple[str, ...] | None:
        """The stores an ops user may see (None: the whole chain)."""
        return self.principal.stores if self.principal.kind == "ops" else None

    def stores_in_scope(self, requested: tuple[str, ...]) -> tuple[str, ...]:
        """What a query over ``requested`` stores (empty = all) may read: the scope when
        nothing is named; 403 when a named store is outside it."""
        scope = self.scope
        if scope is None:
            return requested
        outside = sorted(set(requested) - set(scope))
        if outside:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"store(s) {', '.join(outside)} outside your scope ({', '.join(scope)})",
            )
        return requested or scope

    def check_scope(self, store: str) -> None:
        """403 when an ops user limited to some stores asks for another one."""
        self.stores_in_scope((store,))

    def check_store(self, store: str) -> None:
        """403 when a POS device acts for a store other than its own."""
        if self.store is not None and store != self.store:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"this device belongs to store {self.store}"
            )


def _path_store(request: Request) -> str | None:
    params = request.path_params
    return params.get("store") or params.get("store_id") or request.query_params.get("store")


def require_ops(role: str = "analyst") -> Callable[..., Caller]:
    """Ops users with at least ``role`` (analyst < admin)."""
    if role not in auth.ROLES:
        raise ValueError(f"unknown role {role}")

    def dependency(principal: auth.Principal = Depends(current_principal)) -> Caller:
        if not principal.has_role(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"requires the {role} role")
        return Caller(principal, None)

    return dependency


def require_pos(*, allow_ops: str | None = "admin") -> Callable[..., Caller]:
    """POS devices, scoped to their store (403 when the path or query names another store).
    Ops users with at least ``allow_ops`` may act for any store (None: POS only)."""

    def dependency(
        request: Request, principal: auth.Principal = Depends(current_principal)
    ) -> Caller:
        if principal.kind == "pos":
            caller = Caller(principal, principal.store)
            named = _path_store(request)
            if named is not None:
                caller.check_store(named)
            return caller
        if allow_ops is not None and principal.has_role(allow_ops):
            return Caller(principal, None)
        raise HTTPException(status.HTTP_403_FORBIDDEN, "requires a POS device token")

    return dependency


def require_staff() -> Callable[..., Caller]:
    """Any POS device (scoped to its store) or any ops user."""
    return require_pos(allow_ops="analyst")


def require_integration() -> Callable[..., Caller]:
    """Integration tokens (web shop, CRM), POS devices (scoped to their store) or ops users."""
    staff = require_staff()

    def dependency(
        request: Request, principal: auth.Principal = Depends(current_principal)
    ) -> Caller:
        if principal.kind == "integration":
            return Caller(principal, None)
        return staff(request, principal)

    return dependency


MAX_OFFSET = 10_000_000  # deeper than any list here; 2**63 used to reach the database


@dataclass(frozen=True)
class Page:
    limit: int
    offset: int


def page(
    limit: int = Query(50, ge=1, le=1000, description="Items per page."),
    offset: int = Query(0, ge=0, le=MAX_OFFSET, description="Items to skip."),
) -> Page:
    return Page(limit, offset)
