"""Cursor pagination as the list endpoints answer it: `{"items": [...], "next_cursor": ...}`.

`GET /v1/assets/<collection>` and `GET /v1/ingests` take `limit` and `cursor` and say
where to go on with `next_cursor` (null on the last page). The walk is here, apart from
HTTP, so its properties (every item once, in order, never more than asked for, never a
loop) are tested on any page sizes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from emulsion_cli.errors import CliError

# What one request asks for; the server may answer with fewer.
DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1000

Item = dict[str, Any]


@dataclass(frozen=True)
class Page:
    items: list[Item]
    next_cursor: str | None


def parse_page(document: object, what: str) -> Page:
    if not isinstance(document, dict) or not isinstance(document.get("items"), list):
        raise CliError(f"the API's {what} is not a page ({{items, next_cursor}})")
    cursor = document.get("next_cursor")
    if cursor is not None and not isinstance(cursor, str):
        raise CliError(f"the API's {what} has a next_cursor that is not a string")
    items = document["items"]
    if not all(isinstance(item, dict) for item in items):
        raise CliError(f"the API's {what} has items that are not objects")
    return Page(items, cursor or None)


FetchPage = Callable[[str | None, int], Awaitable[Page]]


async def every_item(
    fetch: FetchPage, page_size: int = DEFAULT_PAGE_SIZE, limit: int | None = None
) -> AsyncIterator[Item]:
    """Items page after page until the last one, or until `limit` items were given.

    A page may be shorter than asked (even empty) and still not be the last: only a
    missing `next_cursor` ends the walk. A cursor seen before would loop for ever, so it
    is an error, not a retry.
    """
    if page_size < 1:
        raise ValueError("page_size must be at least 1")
    given = 0
    cursor: str | None = None
    seen: set[str] = set()
    while limit is None or given < limit:
        wanted = page_size if limit is None else min(page_size, limit - given)
        page = await fetch(cursor, wanted)
        for item in page.items:
            if limit is not None and given >= limit:
                return
            given += 1
            yield item
        if page.next_cursor is None:
            return
        if page.next_cursor in seen:
            raise CliError(f"the API sent the cursor {page.next_cursor!r} twice; stopping")
        seen.add(page.next_cursor)
        cursor = page.next_cursor
