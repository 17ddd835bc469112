"""Error bodies that always serialise and always match the OpenAPI schema.

Every 422 has FastAPI's documented shape, ``{"detail": [{"loc", "msg", "type"}]}``, whether it
comes from request validation, a route's own check or a domain error; other errors keep
``{"detail": ...}``. Validation errors never echo the input back: it may be a password, and
a lone surrogate or an infinity in it made the handler itself fail with a 500.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse


def _text(value: Any) -> str:
    # A lone surrogate cannot be encoded as UTF-8: show it escaped.
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def _loc(loc: Sequence[Any]) -> list[str | int]:
    return [part if isinstance(part, int) else _text(part) for part in loc]


def validation_detail(
    msg: str, loc: Sequence[Any] = ("body",), kind: str = "value_error"
) -> list[dict[str, Any]]:
    """One validation error in the documented shape."""
    return [{"loc": _loc(loc), "msg": _text(msg), "type": kind}]


def unprocessable(detail: Any, extra: dict[str, Any] | None = None) -> JSONResponse:
    """A 422 whose ``detail`` is a list of validation errors, whatever the caller had."""
    if isinstance(detail, list) and all(isinstance(d, dict) and "msg" in d for d in detail):
        items = [{"loc": _loc(d.get("loc", ("body",))), "msg": _text(d["msg"]),
                  "type": _text(d.get("type", "value_error"))} for d in detail]  # fmt: skip
    elif isinstance(detail, dict):
        reason = detail.get("reason", "value_error")
        items = validation_detail(detail.get("detail", reason), kind=str(reason))
    else:
        items = validation_detail(detail)
    return JSONResponse({"detail": items, **(extra or {})}, status_code=422)


async def _request_validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return unprocessable(list(exc.errors()))


async def _http_error(request: Request, exc: Exception) -> Any:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 422:
        return unprocessable(exc.detail)
    return await http_exception_handler(request, exc)


def install(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(HTTPException, _http_error)
