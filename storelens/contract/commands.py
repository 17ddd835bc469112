"""Messages the cloud sends to devices.

``storelens/v1/{store}/{device}/cmd``: the opt-out list, published retained, so a device that
(re)connects gets the current list at once and never links a card swipe of a member who opted
out of in-store tracking.

``storelens/v1/{store}/{device}/ack``: an `Ack` names envelopes (by ``batch_id``) whose events
the cloud has durably stored (or dead-lettered with their raw bytes). A device keeps events in
its outbox until such a receipt arrives, not merely until the broker's PUBACK: a broker that
restarts without its queues, or an ingest worker that dies holding messages, then costs a
resend (absorbed by event-ID de-duplication), never an event.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from storelens.contract.events import Identifier, Token


class OptOutList(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["optout_list"] = "optout_list"
    key_id: Identifier
    tokens: list[Token] = Field(default_factory=list)


MAX_ACK_IDS = 10_000  # batch IDs per Ack; more go in several


class Ack(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["ack"] = "ack"
    batch_ids: list[uuid.UUID] = Field(
        max_length=MAX_ACK_IDS,
        description="Envelopes whose events are stored (or dead-lettered).",
    )


Command = Annotated[OptOutList | Ack, Field(discriminator="type")]
