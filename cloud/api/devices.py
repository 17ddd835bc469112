"""Edge devices: registration (only registered devices' events are accepted), health, and
the dead-letter queue of messages ingest rejected."""

from __future__ import annotations

import base64

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field

from storelens.cloud.api.deps import Caller, Page, get_db, page, require_ops
from storelens.cloud.api.pagination import Paged, paged
from storelens.cloud.commerce import stores
from storelens.cloud.db import Database
from storelens.cloud.ingest import dead_letters as dead_letter_store
from storelens.cloud.ingest import device_registry
from storelens.contract.events import Identifier

router = APIRouter(tags=["devices"])


class DeviceIn(BaseModel):
    store: Identifier = Field(description="Store the device is installed in.")
    device: Identifier = Field(description="Device ID, as in its MQTT topics.")
    description: str = Field("", max_length=200, description="Where it hangs, what it sees.")


class DeviceOut(BaseModel):
    store: str = Field(description="Store ID.")
    device: str = Field(description="Device ID, as in its MQTT topics.")
    registered: bool = Field(description="False once retired: its events are dead-lettered.")
    registered_at: float = Field(description="Epoch seconds.")
    description: str = Field(description="Where it is installed.")
    last_seen: float | None = Field(description="Newest event or status time, epoch seconds.")
    online: bool | None = Field(description="From the retained availability topic.")
    status: dict | None = Field(description="Last DeviceStatus event as sent.")
    fps: float | None = Field(description="Mean camera frame rate in the last status.")
    outbox_depth: int | None = Field(description="Events waiting on the device.")
    lost_events: int | None = Field(description="Events the device dropped, ever.")


class DeadLetterOut(BaseModel):
    id: int = Field(description="Dead-letter ID, increasing.")
    received_at: float = Field(description="Epoch seconds.")
    topic: str = Field(description="MQTT topic the message came on.")
    reason: str = Field(description="Machine tag: bad_json, invalid, unregistered_device, ...")
    detail: str = Field(description="What exactly was wrong.")
    raw_base64: str = Field(description="The message bytes as received, base64.")


def _device(row: dict) -> DeviceOut:
    row = dict(row)
    row["registered"] = bool(row["registered"])
    row["online"] = None if row["online"] is None else bool(row["online"])
    return DeviceOut(**row)


@router.post(
    "/devices",
    response_model=DeviceOut,
    status_code=201,
    summary="Register a device so its events are accepted (admin)",
)
def register(
    body: DeviceIn, db: Database = Depends(get_db), caller: Caller = Depends(require_ops("admin"))
) -> DeviceOut:
    caller.check_scope(body.store)
    if stores.get_store(db, body.store) is None:
        raise stores.UnknownStore(body.store)
    device_registry.register_device(db, body.store, body.device, body.description)
    return _device(device_registry.get_device(db, body.store, body.device))  # type: ignore[arg-type]


@router.get("/devices", response_model=Paged[DeviceOut], summary="Devices and their health")
def list_devices(
    store: str | None = Query(None, description="Only this store."),
    p: Page = Depends(page),
    db: Database = Depends(get_db),
    caller: Caller = Depends(require_ops()),
) -> dict:
    scope = caller.stores_in_scope((store,) if store else ())
    rows = device_registry.list_devices(db, scope or None, limit=p.limit, offset=p.offset)
    return paged([_device(r) for r in rows], p)


@router.get("/devices/{store}/{device}", response_model=DeviceOut, summary="One device")
def get_device(
    store: str, device: str, db: Database = Depends(get_db), caller: Caller = Depends(require_ops())
) -> DeviceOut:
    caller.check_scope(store)
    row = device_registry.get_device(db, store, device)
    if row is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no device {store}/{device}")
    return _device(row)


@router.delete(
    "/devices/{store}/{device}",
    response_model=DeviceOut,
    summary="Retire a device: its further events are dead-lettered (admin)",
)
def retire(
    store: str,
    device: str,
    db: Database = Depends(get_db),
    caller: Caller = Depends(require_ops("admin")),
) -> DeviceOut:
    caller.check_scope(store)
    if not device_registry.unregister_device(db, store, device):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no device {store}/{device}")
    return _device(device_registry.get_device(db, store, device))  # type: ignore[arg-type]


@router.get(
    "/dead-letters",
    response_model=Paged[DeadLetterOut],
    summary="Messages ingest rejected, newest first",
)
def dead_letters(
    reason: str | None = Query(None, description="Only this reason."),
    p: Page = Depends(page),
    db: Database = Depends(get_db),
    caller: Caller = Depends(require_ops()),
) -> dict:
    if caller.scope is not None:  # raw messages of any store: chain-wide ops only
        raise HTTPException(status.HTTP_403_FORBIDDEN, "dead letters are for chain-wide ops")
    rows = dead_letter_store.dead_letters(db, reason=reason, limit=p.limit, offset=p.offset)
    items = [
        DeadLetterOut(
            id=r["id"],
            received_at=r["received_at"],
            topic=r["topic"],
            reason=r["reason"],
            detail=r["detail"],
            raw_base64=base64.b64encode(bytes(r["raw"])).decode(),
        )
        for r in rows
    ]
    return paged(items, p)
