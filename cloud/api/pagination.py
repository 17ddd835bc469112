"""The list envelope every paginated endpoint returns."""

from __future__ import annotations

from typing import Generic, TypeVar

from pydantic import BaseModel, Field

from storelens.cloud.api.deps import Page

T = TypeVar("T")


class Paged(BaseModel, Generic[T]):
    items: list[T] = Field(description="This page's items.")
    limit: int = Field(description="Page size asked for.")
    offset: int = Field(description="Items skipped.")
    next_offset: int | None = Field(description="Offset of the next page; null on the last page.")


def paged(items: list, p: Page) -> dict:
    return {
        "items": items,
        "limit": p.limit,
        "offset": p.offset,
        "next_offset": p.offset + len(items) if len(items) == p.limit else None,
    }
