"""Who may do what with member data: the one rule every member route goes through.

| action  | analyst | admin | POS device                                   |
|---------|---------|-------|----------------------------------------------|
| list    | yes     | yes   | no (all members, by online account)          |
| read    | yes     | yes   | only the member at its till                  |
| enroll  | no      | yes   | yes (the customer in front of it)            |
| identify| no      | yes   | yes: card swipe or the member's code; rate-limited per token, and it |
|         |         |       | puts the member at the till                  |
| consent | no      | yes   | only the member at its till                  |
| link    | no      | yes   | no (linking merges online data into the member) |
| forget  | no      | yes   | no (erases the member chain-wide)            |

"At its till" means the member identified themselves at that device recently (`till`). A POS
asking about a member who is not at its till gets the same 403 whether or not the member
exists, so member IDs cannot be probed.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from fastapi import Depends, HTTPException, Request, status

from storelens.cloud.api import principals as auth
from storelens.cloud.api.deps import Caller, current_principal
from storelens.cloud.commerce import till
from storelens.cloud.db import Database


class MemberAction(StrEnum):
    LIST = "list"
    READ = "read"
    ENROLL = "enroll"
    IDENTIFY = "identify"
    CONSENT = "consent"
    LINK = "link"
    FORGET = "forget"


# action -> (least ops role, what a POS may do: None = nothing, "any", "at_till")
POLICY: dict[MemberAction, tuple[str | None, str | None]] = {
    MemberAction.LIST: ("analyst", None),
    MemberAction.READ: ("analyst", "at_till"),
    MemberAction.ENROLL: ("admin", "any"),
    MemberAction.IDENTIFY: ("admin", "any"),
    MemberAction.CONSENT: ("admin", "at_till"),
    MemberAction.LINK: ("admin", None),
    MemberAction.FORGET: ("admin", None),
}

NOT_AT_TILL = "this member has not identified at this till (look them up by card or code)"


def authorize(db: Database, caller: Caller, action: MemberAction, member_id: str | None) -> None:
    """403 unless ``caller`` may do ``action`` (on ``member_id`` when it names one)."""
    ops_role, pos_rule = POLICY[action]
    principal = caller.principal
    if principal.kind == "ops":
        if ops_role is None or not principal.has_role(ops_role):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"{action} on members requires the {ops_role} role"
            )
        return
    if principal.kind != "pos":  # integration tokens only report interactions
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"this token may not {action} members")
    if pos_rule is None:
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"a POS device may not {action} members")
    needs_till = pos_rule == "at_till" and member_id is not None
    if needs_till and not till.is_at_till(db, principal.store or "", principal.subject, member_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN, NOT_AT_TILL)


def member_access(action: MemberAction) -> Callable[..., Caller]:
    """A dependency for a member route: the caller, once allowed ``action`` on the
    ``{member_id}`` of the path (if any)."""

    def dependency(
        request: Request, principal: auth.Principal = Depends(current_principal)
    ) -> Caller:
        caller = Caller(principal, principal.store if principal.kind == "pos" else None)
        authorize(request.app.state.db, caller, action, request.path_params.get("member_id"))
        return caller

    return dependency


def identified(db: Database, caller: Caller, member_id: str) -> None:
    """Record that the member identified themselves at the caller's till (POS only)."""
    if caller.is_pos:
        till.arrived(db, caller.principal.store or "", caller.principal.subject, member_id)
