"""Bounded reads: a list endpoint's memory follows what it returns, not what it reads.

An IngestJob written with kubectl may still carry a thousand items inline, so a page of
100 such jobs read in one apiserver call is over a hundred megabytes of parsed JSON in
a 256 MiB pod. A page is therefore read `CHUNK` jobs at a time, each chunk turned into
what the answer holds (a summary) and dropped before the next is read: the pod holds
one chunk of whole jobs and the page's summaries, however many jobs (and items) there
are. The apiserver's continue token after the last chunk is the page's cursor, so paging
is unchanged for clients.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeVar

T = TypeVar("T")

# Whole jobs held at once while a page is read.
CHUNK: Final = 10

ListPage = Callable[[str, int, str | None], Awaitable[tuple[list[Any], str | None]]]


async def page_of(
    list_page: ListPage,
    selector: str,
    limit: int,
    cursor: str | None,
    convert: Callable[[Any], T | None],
    chunk: int = CHUNK,
) -> tuple[list[T], str | None]:
    """Up to `limit` objects from `cursor` on, each passed through `convert` (None: left
    out, as a job outside the caller's scopes), read `chunk` at a time; and the cursor
    of the next page (None at the end)."""
    kept: list[T] = []
    read = 0
    # Every call reads at least one object or ends the listing, except a page the
    # apiserver cut short; `limit` calls bound even that.
    for _ in range(limit):
        page, cursor = await list_page(selector, min(chunk, limit - read), cursor)
        read += len(page)
        for found in page:
            converted = convert(found)
            if converted is not None:
                kept.append(converted)
        del page
        if not cursor or read >= limit:
            break
    return kept, cursor
