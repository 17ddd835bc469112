"""Login for ops users, and admin endpoints for users and POS device tokens."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, HTTPException, status
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field

from storelens.cloud.api import principals as auth
from storelens.cloud.api.deps import (
    Caller,
    bearer,
    current_principal,
    get_db,
    get_settings,
    require_ops,
)
from storelens.cloud.api.ratelimit import LOGIN_LIMIT
from storelens.cloud.db import Database
from storelens.cloud.settings import Settings
from storelens.contract.events import Identifier

router = APIRouter(prefix="/auth", tags=["auth"])


class LoginIn(BaseModel):
    username: str = Field(min_length=1, max_length=64, description="Ops user name.")
    password: str = Field(min_length=1, max_length=256, description="The user's password.")


class TokenOut(BaseModel):
    token: str = Field(description="Bearer token; send as `Authorization: Bearer <token>`.")
    expires_at: float | None = Field(description="Epoch seconds; null = until revoked.")


class UserIn(BaseModel):
    username: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.@-]+$", description="Login name."
    )
    password: str = Field(min_length=8, max_length=256, description="At least 8 characters.")
    role: auth.Role = Field(description="analyst (read) or admin (read and change).")


class PosTokenIn(BaseModel):
    store: Identifier = Field(description="The only store this POS device may act for.")
    device_name: Identifier = Field(description="Name of the POS device (till, tablet).")


class PosTokenOut(TokenOut):
    store: str = Field(description="The store the token is scoped to.")
    device_name: str = Field(description="The POS device's name.")


class WhoAmI(BaseModel):
    kind: str = Field(description="ops or pos.")
    subject: str = Field(description="Username or POS device name.")
    role: str | None = Field(description="Ops role.")
    store: str | None = Field(description="POS device's store.")


@router.post(
    "/login",
    response_model=TokenOut,
    dependencies=[Depends(LOGIN_LIMIT)],
    summary="Exchange an ops password for a token",
)
def login(
    body: LoginIn, db: Database = Depends(get_db), settings: Settings = Depends(get_settings)
) -> TokenOut:
    try:
        token = auth.login(db, body.username, body.password, settings.token_ttl_s)
    except auth.AuthError as exc:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, str(exc)) from None
    return TokenOut(token=token, expires_at=time.time() + settings.token_ttl_s)


@router.get("/me", response_model=WhoAmI, summary="Who the token belongs to")
def me(principal: auth.Principal = Depends(current_principal)) -> WhoAmI:
    return WhoAmI(
        kind=principal.kind, subject=principal.subject, role=principal.role, store=principal.store
    )


@router.post("/users", status_code=201, summary="Create an ops user (admin)")
def create_user(
    body: UserIn, db: Database = Depends(get_db), _: Caller = Depends(require_ops("admin"))
) -> dict[str, str]:
    auth.create_user(db, body.username, body.password, body.role)
    return {"username": body.username, "role": body.role}


@router.post(
    "/pos-tokens",
    response_model=PosTokenOut,
    status_code=201,
    summary="Issue a token for one POS device of one store (admin)",
)
def create_pos_token(
    body: PosTokenIn, db: Database = Depends(get_db), _: Caller = Depends(require_ops("admin"))
) -> PosTokenOut:
    token = auth.create_pos_token(db, body.store, body.device_name)
    return PosTokenOut(token=token, expires_at=None, store=body.store, device_name=body.device_name)


@router.delete("/pos-tokens/{store}/{device_name}", summary="Revoke a POS device's tokens (admin)")
def revoke_pos(
    store: str,
    device_name: str,
    db: Database = Depends(get_db),
    _: Caller = Depends(require_ops("admin")),
) -> dict[str, int]:
    n = auth.revoke_pos_device(db, store, device_name)
    if not n:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such POS device token")
    return {"revoked": n}


class ApiTokenIn(BaseModel):
    username: str = Field(min_length=1, max_length=64, description="Ops user the token acts as.")


@router.post(
    "/api-tokens",
    response_model=TokenOut,
    status_code=201,
    summary="Long-lived token for an integration (e.g. the web shop's order webhook) (admin)",
)
def create_api_token(
    body: ApiTokenIn,
    db: Database = Depends(get_db),
    _: Caller = Depends(require_ops("admin")),
) -> TokenOut:
    try:
        token = auth.create_api_token(db, body.username)
    except auth.AuthError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    return TokenOut(token=token, expires_at=None)


@router.post("/logout", status_code=204, summary="Revoke the token used for this call")
def logout(
    credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    db: Database = Depends(get_db),
    _: auth.Principal = Depends(current_principal),
) -> None:
    if credentials is not None:
        auth.revoke(db, credentials.credentials)
