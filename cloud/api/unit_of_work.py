"""One transaction per API request (`storelens.cloud.db.unit_of_work`).

An ASGI middleware, so it holds for every route of the app, its dependencies and its error
handlers alike. The request's writes commit when its response starts with a status below
400, before a byte of it is sent: a client never hears "created" for something that was
then lost. Any exception, or a response of 400 or more, rolls back everything the request
wrote; pushes it queued are dropped. A commit that fails turns the response into a 500.
Streaming responses commit when they start; what their body does later runs on its own.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storelens.cloud.db.unit_of_work import UnitOfWork, close_unit, open_unit

log = logging.getLogger(__name__)

_COMMIT_FAILED = json.dumps({"detail": "the request's changes could not be saved"}).encode()


class UnitOfWorkMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        unit, token = open_unit(scope["app"].state.db)
        decided = failed = False

        async def send_after_commit(message: Message) -> None:
            nonlocal decided, failed
            if message["type"] == "http.response.start" and not decided:
                decided = True
                if message["status"] < 400:
                    try:
                        await _finish(unit, commit=True)
                    except Exception:
                        log.exception("committing %s %s failed", scope["method"], scope["path"])
                        failed = True
                        await _send_500(send)
                        return
                else:
                    await _finish(unit, commit=False)
            if not failed:  # after a failed commit the original response is not sent
                await send(message)

        try:
            await self.app(scope, receive, send_after_commit)
        finally:
            if not decided:  # an exception, or no response at all (the client left)
                await _finish(unit, commit=False)
            close_unit(token)


async def _finish(unit: UnitOfWork, *, commit: bool) -> None:
    end = unit.commit if commit else unit.rollback
    if not unit.pending:  # no write, nothing queued: no thread hop for reads
        end()
        return
    with anyio.CancelScope(shield=True):  # a client that leaves does not leave a lock held
        await anyio.to_thread.run_sync(end)


async def _send_500(send: Send) -> None:
    headers: list[Any] = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(_COMMIT_FAILED)).encode()),
    ]
    await send({"type": "http.response.start", "status": 500, "headers": headers})
    await send({"type": "http.response.body", "body": _COMMIT_FAILED})
