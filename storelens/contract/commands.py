"""Messages the cloud sends to devices on ``storelens/v1/{store}/{device}/cmd``.

The opt-out list is published retained, so a device that (re)connects gets the current list
at once and never links a card swipe of a member who opted out of in-store tracking.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from storelens.contract.events import Identifier, Token


class OptOutList(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["optout_list"] = "optout_list"
    key_id: Identifier
    tokens: list[Token] = Field(default_factory=list)


Command = Annotated[OptOutList, Field(discriminator="type")]
