"""Fulfillment task states and the moves between them (drawn in `workflow`'s docstring)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class TaskKind(StrEnum):
    ship = "ship"
    pickup = "pickup"


class TaskState(StrEnum):
    brokered = "brokered"
    accepted = "accepted"
    picked = "picked"
    packed = "packed"
    shipped = "shipped"
    delivered = "delivered"
    ready_for_pickup = "ready_for_pickup"
    picked_up = "picked_up"
    rejected = "rejected"
    timed_out = "timed_out"
    cancelled = "cancelled"
    expired = "expired"


class Action(StrEnum):
    accept = "accept"
    reject = "reject"
    pick = "pick"
    pack = "pack"
    ship = "ship"
    deliver = "deliver"
    ready = "ready"
    picked_up = "picked_up"
    cancel = "cancel"
    time_out = "time_out"  # the sweeper: not accepted before the store's deadline
    expire = "expire"  # the sweeper: the customer did not collect in time


class RejectReason(StrEnum):
    not_in_stock = "not_in_stock"
    damaged = "damaged"
    no_capacity = "no_capacity"


@dataclass(frozen=True)
class Move:
    sources: frozenset[TaskState]
    target: TaskState
    kinds: frozenset[TaskKind] = frozenset(TaskKind)


_S = TaskState
MOVES: dict[Action, Move] = {
    Action.accept: Move(frozenset({_S.brokered}), _S.accepted),
    Action.reject: Move(frozenset({_S.brokered, _S.accepted, _S.picked}), _S.rejected),
    Action.pick: Move(frozenset({_S.accepted}), _S.picked),
    Action.pack: Move(frozenset({_S.picked}), _S.packed, frozenset({TaskKind.ship})),
    Action.ship: Move(frozenset({_S.packed}), _S.shipped, frozenset({TaskKind.ship})),
    Action.deliver: Move(frozenset({_S.shipped}), _S.delivered, frozenset({TaskKind.ship})),
    Action.ready: Move(frozenset({_S.picked}), _S.ready_for_pickup, frozenset({TaskKind.pickup})),
    Action.picked_up: Move(
        frozenset({_S.ready_for_pickup}), _S.picked_up, frozenset({TaskKind.pickup})
    ),
    Action.cancel: Move(frozenset({_S.brokered, _S.accepted, _S.picked}), _S.cancelled),
    Action.time_out: Move(frozenset({_S.brokered}), _S.timed_out),
    Action.expire: Move(frozenset({_S.ready_for_pickup}), _S.expired, frozenset({TaskKind.pickup})),
}

# States in which a task holds reserved stock and a slot of the store's capacity.
OPEN_STATES = frozenset({_S.brokered, _S.accepted, _S.picked, _S.packed, _S.ready_for_pickup})
# States that mean the store turned the order down: it never gets that order back.
STORE_DECLINED_STATES = frozenset({_S.rejected, _S.timed_out})
TERMINAL_STATES = frozenset(TaskState) - OPEN_STATES - {_S.shipped}
# Actions a store clerk may take from the POS (the rest belong to the system or ops).
POS_ACTIONS = frozenset(
    {
        Action.accept,
        Action.reject,
        Action.pick,
        Action.pack,
        Action.ship,
        Action.deliver,
        Action.ready,
        Action.picked_up,
    }
)


def next_action_hint(state: TaskState, kind: TaskKind) -> list[Action]:
    """What can happen next from ``state`` (shown to clerks and in 409 messages)."""
    return [a for a, m in MOVES.items() if state in m.sources and kind in m.kinds]
