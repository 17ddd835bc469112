"""Members: enrollment by card, lookup (POS by card, web by account), consent, forget-me and
the merged profile. Card numbers travel only in request bodies, never in URLs (logs)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from storelens.cloud.api.deps import Caller, Page, get_db, get_hooks, get_pseudonym_key, page
from storelens.cloud.api.member_access import MemberAction, identified, member_access
from storelens.cloud.api.pagination import Paged, paged
from storelens.cloud.api.ratelimit import MEMBER_LOOKUP_LIMIT
from storelens.cloud.commerce import members
from storelens.cloud.db import Database
from storelens.cloud.hooks import Hooks
from storelens.pseudonym import PseudonymKey

router = APIRouter(prefix="/members", tags=["members"])


class MemberOut(BaseModel):
    id: str = Field(description="Random member ID (not derived from the card).")
    key_id: str = Field(description="ID of the pseudonym key that hashed the card.")
    name: str | None = Field(description="Display name, if given.")
    tier: str = Field(description="Loyalty tier.")
    created_at: float = Field(description="Epoch seconds.")
    tracking: bool = Field(description="Consent: in-store visits may be linked.")
    marketing: bool = Field(description="Consent: personalised offers allowed.")
    consent_updated_at: float = Field(description="Epoch seconds of the last consent change.")
    accounts: list[str] = Field(description="Linked online customer account IDs.")


class CardLookup(BaseModel):
    card_number: str = Field(min_length=4, max_length=64, description="As printed or read.")


class AccountLink(BaseModel):
    account_id: str = Field(min_length=1, max_length=128, description="Online account ID.")


class ForgetOut(BaseModel):
    forgotten: str = Field(description="The deleted member ID.")
    events: int = Field(description="In-store events unlinked or deleted.")
    orders: int = Field(description="Online orders detached from the person.")
    sales: int = Field(description="POS sales detached from the member.")
    accounts: int = Field(description="Online accounts deleted.")


class ProfileOut(BaseModel):
    member: MemberOut = Field(description="The member and their consent.")
    visits: list[dict] = Field(description="Recent store visits: store, times, zones.")
    zone_dwell: list[dict] = Field(description="Per store and zone: visits and total dwell (s).")
    online_orders: list[dict] = Field(description="Recent online orders with items.")
    pos_purchases: list[dict] = Field(description="Recent in-store purchases with items.")
    coupons: list[dict] = Field(description="Coupons issued to the member.")
    online_interest: list[dict] = Field(
        default_factory=list,
        description="Products viewed or put in a cart online lately; with `store`, what that "
        "store has in stock of each (viewed online, in stock here).",
    )
    scores: dict[str, float] = Field(
        default_factory=dict, description="Engagement score per active scoring plan."
    )
    scoring_plan: str | None = Field(None, description="The plan that acts for this member.")
    propensity: dict[str, float] = Field(
        default_factory=dict,
        description="Category -> probability of buying it within `propensity_horizon_days` "
        "(calibrated; categories under 0.5% are left out).",
    )
    propensity_horizon_days: float | None = Field(None, description="Horizon of `propensity`.")


def _out(row: dict) -> MemberOut:
    return MemberOut(**{k: v for k, v in row.items() if k != "token"})


def _found(row: dict | None, what: str) -> dict:
    if row is None:
        raise members.UnknownMember(what)
    return row


@router.post("", response_model=MemberOut, status_code=201, summary="Enroll a member by card")
def enroll(
    body: members.Enrollment,
    db: Database = Depends(get_db),
    key: PseudonymKey = Depends(get_pseudonym_key),
    caller: Caller = Depends(member_access(MemberAction.ENROLL)),
    hooks: Hooks = Depends(get_hooks),
) -> MemberOut:
    member = members.enroll(db, key, body, hooks=hooks)
    identified(db, caller, member["id"])
    return _out(member)


@router.get("", response_model=Paged[MemberOut], summary="All members (ops)")
def list_members(
    p: Page = Depends(page),
    db: Database = Depends(get_db),
    _: Caller = Depends(member_access(MemberAction.LIST)),
) -> dict:
    return paged([_out(r) for r in members.list_members(db, limit=p.limit, offset=p.offset)], p)


@router.post(
    "/lookup",
    response_model=MemberOut,
    dependencies=[Depends(MEMBER_LOOKUP_LIMIT)],
    summary="Find the member holding a card (a POS: the card swiped at its till)",
)
def lookup(
    body: CardLookup,
    db: Database = Depends(get_db),
    key: PseudonymKey = Depends(get_pseudonym_key),
    caller: Caller = Depends(member_access(MemberAction.IDENTIFY)),
) -> MemberOut:
    row = _found(members.member_by_card(db, key, body.card_number), "no member with this card")
    identified(db, caller, row["id"])
    return _out(row)


@router.get(
    "/by-account/{account_id}",
    response_model=MemberOut,
    summary="Find the member linked to an online account",
)
def by_account(
    account_id: str,
    db: Database = Depends(get_db),
    _: Caller = Depends(member_access(MemberAction.LIST)),
) -> MemberOut:
    return _out(_found(members.member_by_account(db, account_id), f"account {account_id}"))


@router.get("/{member_id}", response_model=MemberOut, summary="One member")
def get_member(
    member_id: str,
    db: Database = Depends(get_db),
    _: Caller = Depends(member_access(MemberAction.READ)),
) -> MemberOut:
    return _out(_found(members.get_member(db, member_id), member_id))


@router.post(
    "/{member_id}/accounts",
    response_model=MemberOut,
    summary="Link an online customer account to the member",
)
def link_account(
    member_id: str,
    body: AccountLink,
    db: Database = Depends(get_db),
    _: Caller = Depends(member_access(MemberAction.LINK)),
) -> MemberOut:
    return _out(members.link_account(db, member_id, body.account_id))


@router.delete(
    "/{member_id}/accounts/{account_id}",
    response_model=MemberOut,
    summary="Unlink an online account",
)
def unlink_account(
    member_id: str,
    account_id: str,
    db: Database = Depends(get_db),
    _: Caller = Depends(member_access(MemberAction.LINK)),
) -> MemberOut:
    if not members.unlink_account(db, member_id, account_id):
        raise members.UnknownMember(f"account {account_id} of {member_id}")
    return _out(_found(members.get_member(db, member_id), member_id))


@router.patch(
    "/{member_id}/consent",
    response_model=MemberOut,
    summary="Change consent (withdrawing tracking unlinks past visits)",
)
def set_consent(
    member_id: str,
    body: members.Consent,
    db: Database = Depends(get_db),
    _: Caller = Depends(member_access(MemberAction.CONSENT)),
    hooks: Hooks = Depends(get_hooks),
) -> MemberOut:
    return _out(members.set_consent(db, member_id, body, hooks=hooks))


@router.delete(
    "/{member_id}",
    response_model=ForgetOut,
    summary="Forget me: delete the member and everything that names them",
)
def forget(
    member_id: str,
    db: Database = Depends(get_db),
    _: Caller = Depends(member_access(MemberAction.FORGET)),
    hooks: Hooks = Depends(get_hooks),
) -> ForgetOut:
    counts = members.forget(db, member_id, hooks=hooks)
    return ForgetOut(forgotten=member_id, **counts)


@router.get(
    "/{member_id}/profile",
    response_model=ProfileOut,
    summary="Online and in-store behaviour merged",
)
def profile(
    member_id: str,
    days: float = Query(90, gt=0, le=3650, description="Look-back."),
    limit: int = Query(20, ge=1, le=200, description="Items per section."),
    store: str | None = Query(
        None, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$", description="Stock of this store."
    ),
    db: Database = Depends(get_db),
    caller: Caller = Depends(member_access(MemberAction.READ)),
) -> ProfileOut:
    from storelens.cloud.personalization import interactions, propensity, scoring
    from storelens.cloud.personalization.scoring_plans import active_plans

    data = members.profile(db, member_id, days=days, limit=limit)
    data["member"] = _out(data["member"])
    store = caller.store or store  # a POS sees its own store's stock
    data["online_interest"] = interactions.online_interest(
        db, member_id, store=store, days=days, limit=limit
    )
    plans = active_plans(db)
    data["scores"] = {p.id: round(scoring.score(db, member_id, plan=p), 2) for p in plans}
    data["scoring_plan"] = scoring.plan_for(db, member_id).id
    data["propensity"] = propensity.for_member(db, member_id, limit=limit)
    data["propensity_horizon_days"] = propensity.horizon_days(db)
    if caller.store is not None:
        data = _till_view(data, caller.store)
    return ProfileOut(**data)


def _till_view(data: dict, store: str) -> dict:
    """What a till needs about the member in front of it: this store's visits, dwell and
    purchases, and their coupons; not other stores' visits nor online orders."""
    here = {"visits", "zone_dwell", "pos_purchases"}
    view = {k: [r for r in v if r.get("store") == store] if k in here else v
            for k, v in data.items()}  # fmt: skip
    view["online_orders"] = []
    return view
