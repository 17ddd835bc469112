"""The mobile POS API: member lookup, recommendations and offers for the member in this
store, offers shown/declined, coupon validation, checkout with coupons, and the live push
stream. Every route acts for the caller's store (a POS device token is bound to one store;
naming another store gets 403); ops admins name the store with ``?store=``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, ConfigDict, Field, model_validator

from storelens.cloud.api import deps
from storelens.cloud.api import principals as auth
from storelens.cloud.api.deps import Caller, get_db, get_sale_link, get_settings, require_pos
from storelens.cloud.api.member_access import MemberAction, authorize, identified
from storelens.cloud.api.ratelimit import MEMBER_LOOKUP_LIMIT, coupon_attempt
from storelens.cloud.commerce import members, sales, visit_sales, visit_today
from storelens.cloud.db import Database
from storelens.cloud.personalization import (
    checkout,
    coupons,
    interactions,
    offers,
    propensity,
    scoring,
)
from storelens.cloud.personalization.coupons import CouponRejected, DiscountTerms
from storelens.cloud.personalization.recommend import RecommendationService
from storelens.cloud.services import Services
from storelens.cloud.settings import Settings
from storelens.contract.bounds import EpochSeconds


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Merged into the app's lifespan by include_router. The newest stored model (or, before
    # the builder stored one, the fallback) is loaded in the background from startup (readyz
    # says "warming up" until then), so the first POS request does not pay for it. The
    # recommender and the impression log stop with the app's `Services`.
    app.state.services.recommendations()
    yield


router = APIRouter(prefix="/pos", tags=["pos"], lifespan=_lifespan)

StoreQuery = Query(None, description="Store to act for: ops callers only; a POS uses its own.")


async def get_recommender(request: Request) -> RecommendationService:
    """The app's recommendation service; until its first model is built, requests wait off
    the event loop (503 if it takes too long)."""
    svc = request.app.state.services.recommendations()
    if not svc.ready and not await anyio.to_thread.run_sync(svc.wait_ready, 120.0):
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "recommendations warming up")
    return svc


def request_recommendation_rebuild(app: FastAPI) -> None:
    """Call after bulk imports (catalog, sales, orders): the model rebuilds in the background."""
    recommender = app.state.services.recommender
    if recommender is not None:
        recommender.request_rebuild()


def _impressions(request: Request) -> offers.ImpressionBuffer:
    return request.app.state.services.impressions()


_require_pos = require_pos()


async def pos_caller(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(deps._bearer),
) -> Caller:
    """`require_pos()` resolved on the event loop, for the hot read routes: the same checks
    (core's functions, called inline), without a threadpool hop per sync dependency, which
    costs as much as the whole recommendation under load."""
    principal = deps.current_principal(credentials, request.app.state.db)
    return _require_pos(request, principal)


async def get_policy(request: Request) -> offers.OfferPolicy:
    return request.app.state.services.offer_policy


def _store(caller: Caller, store: str | None, db: Database) -> str:
    if caller.store is not None:
        return caller.store  # require_pos already refused a different ?store=
    if not store:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY, "name the store with ?store=")
    if db.scalar("SELECT count(*) FROM stores WHERE id = ?", (store,)) == 0:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"not found: store {store}")
    return store


def _member(db: Database, member_id: str, caller: Caller) -> dict[str, Any]:
    """The member, once ``caller`` may act for them (a POS: the member at its till). Every
    route about a member gets it here, so none can skip the rule."""
    authorize(db, caller, MemberAction.READ, member_id)
    row = members.get_member(db, member_id)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"not found: member {member_id}")
    return row


# -- models --------------------------------------------------------------------------------


class LookupIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    card_number: str | None = Field(
        None, min_length=4, max_length=64, description="Scanned card number (hashed, not stored)."
    )
    member_id: str | None = Field(None, max_length=64, description="Member ID typed or scanned.")

    @model_validator(mode="after")
    def _one(self) -> LookupIn:
        if (self.card_number is None) == (self.member_id is None):
            raise ValueError("give exactly one of card_number or member_id")
        return self


class CouponOut(BaseModel):
    code: str = Field(description="Coupon code to scan or type at checkout.")
    template_id: str | None
    source: str = Field(description="offer, recommended_purchase or score.")
    kind: str
    value: float
    scope: str
    scope_value: str | None
    min_spend: float
    expires_at: float


class OnlineInterestOut(BaseModel):
    sku: str
    name: str | None
    category: str | None
    views: int
    cart_adds: int
    last_at: float = Field(description="Last view or cart add, epoch seconds.")
    in_stock_here: bool | None = Field(None, description="This store has it available.")
    available_here: int | None = None
    shelf_location: str | None = None


class MemberCard(BaseModel):
    """What the clerk sees about a member."""

    id: str
    name: str | None
    tier: str
    marketing: bool = Field(description="Marketing consent: offers only when true.")
    tracking: bool = Field(description="In-store tracking consent.")
    score: float = Field(description="Engagement score now (decayed).")
    coupons: list[CouponOut] = Field(description="Active coupons the member can use.")
    online_interest: list[OnlineInterestOut] = Field(
        default_factory=list,
        description="Products the member viewed or put in a cart online in the last 30 days, "
        "with this store's stock of each (viewed online, in stock here).",
    )
    propensity: dict[str, float] = Field(
        default_factory=dict,
        description="Top categories by probability of buying within the propensity horizon "
        "(members with marketing consent).",
    )


class RecommendationOut(BaseModel):
    sku: str
    name: str
    category: str
    reason: str = Field(description='Why, in words: "spent 4 min in Handbags today".')
    source: str = Field(
        description="repeat, similar, today_dwell, affinity, viewed_online, carted_online,"
        " popular, category_best_seller or store_best_seller."
    )
    score: float


class RecommendationsOut(BaseModel):
    member_id: str
    store: str
    model_built_at: float
    items: list[RecommendationOut]


class OfferOut(BaseModel):
    template_id: str
    name: str
    description: str
    terms: DiscountTerms
    coupon_days: float
    why: str


class OffersOut(BaseModel):
    member_id: str
    store: str
    offers: list[OfferOut] = Field(description="At most K; empty without marketing consent.")


class DeclinedOut(BaseModel):
    template_id: str
    voided_coupons: int


class ValidateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str = Field(min_length=4, max_length=64)
    member_id: str = Field(max_length=64)
    items: list[sales.SaleItem] = Field(min_length=1, max_length=500)


class ValidateOut(BaseModel):
    code: str
    valid: bool
    discount: float
    reason: str | None = Field(description="Why not, when invalid: expired, redeemed, ...")


class CheckoutIn(BaseModel):
    """A checkout at the caller's store; coupons are validated and redeemed with the sale."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(
        None, min_length=8, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$",
        description="POS-generated sale ID; replays are safe.",
    )  # fmt: skip
    ts: EpochSeconds | None = Field(None, description="Checkout time, epoch s; default now.")
    member_id: str | None = Field(None, max_length=64)
    items: list[sales.SaleItem] = Field(min_length=1, max_length=500)
    coupon_codes: list[str] = Field(default_factory=list, max_length=20)


class RedeemedOut(BaseModel):
    code: str
    discount: float


class CheckoutOut(BaseModel):
    sale_id: str
    created: bool = Field(description="False when this sale ID was already recorded.")
    subtotal: float
    discount: float
    total: float
    redeemed: list[RedeemedOut]
    issued: list[CouponOut] = Field(description="Coupons earned for the next purchase.")


# -- routes --------------------------------------------------------------------------------


def _card(db: Database, member: dict[str, Any], store: str | None = None) -> MemberCard:
    return MemberCard(
        id=member["id"], name=member["name"], tier=member["tier"], marketing=member["marketing"],
        tracking=member["tracking"], score=round(scoring.score(db, member["id"]), 1),
        # Profiling for offers: shown to the clerk only with marketing consent.
        propensity=propensity.for_member(db, member["id"], limit=5) if member["marketing"] else {},
        online_interest=[
            OnlineInterestOut(**r)
            for r in interactions.online_interest(db, member["id"], store=store, limit=5)
        ],
        coupons=[
            CouponOut(**c) for c in coupons.list_for_member(db, member["id"], active_only=True)
        ],
    )  # fmt: skip


class StatusOut(BaseModel):
    store: str
    recommendations_ready: bool = Field(description="False while the first model builds.")
    model_built_at: float | None = Field(description="When the serving model was built.")
    model_source: str | None = Field(
        None,
        description="'stored #ID' (built by `storelens cloud recommend build`), or 'fallback'"
        " (the hand-set blend the API builds itself until a built model is stored).",
    )


@router.get("/status", response_model=StatusOut, summary="This POS's store and service status")
async def pos_status(request: Request, caller: Caller = Depends(pos_caller)) -> StatusOut:
    svc = request.app.state.services.recommendations()
    return StatusOut(
        store=caller.store or "",
        recommendations_ready=svc.ready,
        model_built_at=svc.model.built_at if svc.ready else None,
        model_source=svc.source if svc.ready else None,
    )


@router.post(
    "/members/lookup",
    response_model=MemberCard,
    dependencies=[Depends(MEMBER_LOOKUP_LIMIT)],
    summary="Identify the member at this till by a swiped card or the member code they show",
)
def lookup(
    body: LookupIn,
    db: Database = Depends(get_db),
    settings: Settings = Depends(get_settings),
    caller: Caller = Depends(require_pos()),
) -> MemberCard:
    authorize(db, caller, MemberAction.IDENTIFY, None)
    if body.card_number is not None:
        row = members.member_by_card(db, settings.pseudonym_key, body.card_number)
    else:
        row = members.get_member(db, body.member_id or "")
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found: no such member")
    identified(db, caller, row["id"])  # from now on this till may act for them
    return _card(db, row, caller.store)


@router.get("/members/{member_id}", response_model=MemberCard, summary="A member, for the clerk")
def member_card(
    member_id: str, db: Database = Depends(get_db), caller: Caller = Depends(require_pos())
) -> MemberCard:
    return _card(db, _member(db, member_id, caller), caller.store)


class ZoneStayOut(BaseModel):
    zone: str
    entered_at: float | None = Field(description="Epoch seconds.")
    dwell_s: float | None
    kind: str | None = Field(description="fitting_room, checkout, or none.")


class VisitTodayOut(BaseModel):
    """The member's latest visit to this store today (local day)."""

    visits_today: int = Field(description="Visits of the member to this store today.")
    in_store: bool = Field(description="The latest visit has not ended yet.")
    started_at: float | None = Field(description="When it began, epoch seconds.")
    ended_at: float | None = Field(description="When it ended (None while in store).")
    minutes_in_store: float = Field(description="Minutes so far (or in total, once ended).")
    zones: list[ZoneStayOut] = Field(description="Zone stays of the visit, in order.")
    tryons: int = Field(description="Fitting-room sessions (the camera cannot see garments).")
    tryon_minutes: float
    checkout: bool = Field(description="The visit went through a checkout zone.")


@router.get(
    "/members/{member_id}/visit-today",
    response_model=VisitTodayOut,
    summary="The member's visit to this store today: zones, try-ons, minutes in store",
)
def member_visit_today(
    member_id: str,
    store: str | None = Query(None, description="Store (staff callers); a POS: its own."),
    db: Database = Depends(get_db),
    caller: Caller = Depends(require_pos()),
) -> dict:
    member = _member(db, member_id, caller)
    return visit_today.member_visit_today(db, _store(caller, store, db), member)


@router.get(
    "/members/{member_id}/recommendations",
    response_model=RecommendationsOut,
    summary="Items to suggest to the member in this store, each with a reason",
)
async def recommendations(
    request: Request,
    member_id: str,
    limit: int = Query(10, ge=1, le=50),
    store: str | None = StoreQuery,
    caller: Caller = Depends(pos_caller),
    recommender: RecommendationService = Depends(get_recommender),
    policy: offers.OfferPolicy = Depends(get_policy),
) -> RecommendationsOut:
    db: Database = request.app.state.db
    store = _store(caller, store, db)
    member = _member(db, member_id, caller)
    now = time.time()
    items = recommender.for_member(member, store, limit=limit, now=now)
    if member["marketing"] and not offers.in_holdout(member_id, policy):
        # Remembered for "buy a recommended item today, get N% off your next purchase".
        _impressions(request).add(member_id, store, [r.sku for r in items], now)
    return RecommendationsOut(
        member_id=member_id, store=store, model_built_at=recommender.model.built_at,
        items=[RecommendationOut(**r.__dict__) for r in items],
    )  # fmt: skip


def _facts(
    db: Database, member: dict[str, Any], store: str, recommender: RecommendationService
) -> offers.MemberFacts:
    """What offer eligibility looks at; today's dwell only for members who allow tracking."""
    affinity = recommender.today_dwell(member["token"], store) if member["tracking"] else {}
    return offers.MemberFacts(
        member["id"], member["marketing"], member["tier"], scoring.score(db, member["id"]),
        affinity, propensity.for_member(db, member["id"]),
    )  # fmt: skip


@router.get(
    "/members/{member_id}/offers",
    response_model=OffersOut,
    summary="At most K offers for the member now (computing counts nothing)",
)
def member_offers(
    member_id: str,
    store: str | None = StoreQuery,
    db: Database = Depends(get_db),
    caller: Caller = Depends(require_pos()),
    recommender: RecommendationService = Depends(get_recommender),
    policy: offers.OfferPolicy = Depends(get_policy),
) -> OffersOut:
    store = _store(caller, store, db)
    member = _member(db, member_id, caller)
    proposals = offers.propose(db, _facts(db, member, store, recommender), store, policy=policy)
    return OffersOut(
        member_id=member_id, store=store,
        offers=[OfferOut(**p.__dict__) for p in proposals],
    )  # fmt: skip


def _offer_error(exc: offers.OfferError) -> HTTPException:
    code = status.HTTP_404_NOT_FOUND if exc.reason == "unknown_offer" else status.HTTP_409_CONFLICT
    return HTTPException(code, {"reason": exc.reason, "detail": str(exc)})


@router.post(
    "/members/{member_id}/offers/{template_id}/shown",
    response_model=CouponOut,
    status_code=201,
    summary="The clerk showed this offer: counts toward caps, issues its coupon",
)
def offer_shown(
    member_id: str,
    template_id: str,
    store: str | None = StoreQuery,
    db: Database = Depends(get_db),
    caller: Caller = Depends(require_pos()),
    recommender: RecommendationService = Depends(get_recommender),
    policy: offers.OfferPolicy = Depends(get_policy),
) -> CouponOut:
    store = _store(caller, store, db)
    member = _member(db, member_id, caller)
    try:
        coupon = offers.mark_shown(
            db, _facts(db, member, store, recommender), template_id, store, policy=policy
        )
    except offers.OfferError as exc:
        raise _offer_error(exc) from None
    return CouponOut(**coupon)


@router.post(
    "/members/{member_id}/offers/{template_id}/declined",
    response_model=DeclinedOut,
    summary="The member declined: not proposed again for the cooldown",
)
def offer_declined(
    member_id: str,
    template_id: str,
    store: str | None = StoreQuery,
    db: Database = Depends(get_db),
    caller: Caller = Depends(require_pos()),
) -> DeclinedOut:
    store = _store(caller, store, db)
    _member(db, member_id, caller)
    try:
        voided = offers.mark_declined(db, member_id, template_id, store)
    except offers.OfferError as exc:
        raise _offer_error(exc) from None
    return DeclinedOut(template_id=template_id, voided_coupons=voided)


@router.post(
    "/coupons/validate",
    response_model=ValidateOut,
    responses={429: {"description": "Too many coupon attempts for this token or member."}},
    summary="Check a coupon against a basket without redeeming it",
)
def validate_coupon(
    request: Request,
    body: ValidateIn,
    store: str | None = StoreQuery,
    db: Database = Depends(get_db),
    caller: Caller = Depends(require_pos()),
) -> ValidateOut:
    store = _store(caller, store, db)
    authorize(db, caller, MemberAction.READ, body.member_id)
    coupon_attempt(request, body.member_id, 1)
    lines = checkout.basket_lines(db, body.items)
    code = coupons.normalize_code(body.code)
    try:
        _, discount = coupons.evaluate(db, code, member_id=body.member_id, store=store, lines=lines)
    except CouponRejected as exc:
        return ValidateOut(code=code, valid=False, discount=0.0, reason=exc.reason)
    return ValidateOut(code=code, valid=True, discount=discount, reason=None)


@router.post(
    "/sales",
    response_model=CheckoutOut,
    status_code=201,
    responses={
        409: {"description": "A coupon was rejected; nothing was recorded."},
        429: {"description": "Too many coupon attempts for this token or member."},
    },
    summary="Record a sale with its coupons (all or nothing)",
)
async def record_sale(
    request: Request,
    body: CheckoutIn,
    store: str | None = StoreQuery,
    db: Database = Depends(get_db),
    caller: Caller = Depends(require_pos()),
    recommender: RecommendationService = Depends(get_recommender),
    policy: offers.OfferPolicy = Depends(get_policy),
    sale_link: visit_sales.LinkWindows = Depends(get_sale_link),
) -> Any:
    impressions = _impressions(request)
    if body.member_id:
        authorize(db, caller, MemberAction.READ, body.member_id)
    coupon_attempt(request, body.member_id, len(body.coupon_codes))

    def work() -> checkout.CheckoutResult:
        # Off the event loop: a checkout waits for database write locks.
        where = _store(caller, store, db)
        sale = sales.SaleIn(store=where, **body.model_dump())
        device = caller.principal.subject if caller.is_pos else None
        now = time.time()
        if body.member_id:
            impressions.flush()  # this replica's recent recommendations count for the reward
        return checkout.checkout(
            db,
            sale,
            device=device,
            now=now,
            start_of_day=recommender.start_of_day(where, now),
            policy=policy,
            sale_link=sale_link,
        )

    try:
        result = await anyio.to_thread.run_sync(work)
    except CouponRejected as exc:
        raise HTTPException(
            status.HTTP_409_CONFLICT, {"reason": exc.reason, "code": exc.code, "detail": str(exc)}
        ) from None
    out = CheckoutOut(
        sale_id=result.sale_id, created=result.created, subtotal=result.subtotal,
        discount=result.discount, total=result.total,
        redeemed=[RedeemedOut(**r) for r in result.redeemed],
        issued=[CouponOut(**c) for c in result.issued],
    )  # fmt: skip
    code = status.HTTP_201_CREATED if result.created else status.HTTP_200_OK
    return JSONResponse(out.model_dump(), status_code=code)


@router.get(
    "/stream",
    response_class=EventSourceResponse,
    summary="Live pushes to this store's POS (member_alert, task, coupon_issued)",
    description="The stream re-checks its token every `STORELENS_PUSH_TOKEN_CHECK_S` and ends "
    "when it is revoked or expired, and after `STORELENS_PUSH_STREAM_MAX_S` in any case: "
    "reconnect with `Last-Event-ID` to resume without gaps.",
)
async def stream(
    request: Request,
    store: str | None = StoreQuery,
    keepalive_s: float = Query(15.0, ge=0.05, le=120, description="Keep-alive comment interval."),
    last_event_id: str | None = Header(None, alias="Last-Event-ID"),
    credentials: HTTPAuthorizationCredentials | None = Depends(deps.bearer),
    db: Database = Depends(get_db),
    services: Services = Depends(deps.get_services),
    caller: Caller = Depends(require_pos()),
) -> AsyncIterator[ServerSentEvent]:
    store = _store(caller, store, db)
    settings: Settings = request.app.state.settings
    token = credentials.credentials if credentials is not None else ""
    check_s = settings.push_token_check_s
    started = last_sent = last_check = time.monotonic()
    yield ServerSentEvent(comment="connected", retry=3000)
    # Wake at least every check_s, whatever the keep-alive, to notice a revoked token.
    wake_s = min(keepalive_s, check_s)
    async for msg in services.push.stream(store, last_event_id, keepalive_s=wake_s):
        now = time.monotonic()
        if now - last_check >= check_s:
            last_check = now
            if await anyio.to_thread.run_sync(auth.authenticate, db, token) is None:
                yield ServerSentEvent(comment="token revoked or expired")
                return
        if now - started >= settings.push_stream_max_s:
            yield ServerSentEvent(comment="stream lifetime reached: reconnect")
            return
        if msg is None:
            if now - last_sent >= keepalive_s:
                last_sent = now
                yield ServerSentEvent(comment="keep-alive")
            continue
        last_sent = now
        yield ServerSentEvent(
            id=msg.id, event=msg.kind,
            data={"id": msg.id, "kind": msg.kind, "store": msg.store, "at": msg.at,
                  "payload": msg.payload},
        )  # fmt: skip
