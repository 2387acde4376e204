"""Pages of a collection's assets, newest first, with opaque cursors.

The object store lists keys in name order; a gallery wants the newest first. So a page
is cut from the whole listing ordered by write time (newest first, then by key), and
its cursor names the last entry it took: the next page starts after that entry in the
same order. An asset written after the first page was read moves to the front, so a
client paging on sees it only when it starts again (as with any newest-first feed).

`order=taken_at` pages in capture order from the index under `taken/`
(`keys.taken_key`), whose key order is that order: a page lists the index from its
cursor (the last index key it looked at) and reads only the manifests of what it lists,
so it costs what it shows. An entry counts only while its asset's manifest is live at
the entry's version; entries of superseded versions or deleted assets (until the janitor
collects them) are passed over, so each live asset shows once, at its capture time.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

from emulsion_api.errors import ApiError
from emulsion_api.store import IndexEntry, ListedManifest, StoredManifest
from emulsion_contracts import keys

# `state` of the list: live assets (the default), tombstones of deleted ones, or both.
StateFilter = Literal["live", "deleted", "all"]
# The list's order: by when each manifest was last written (newest first), or by the
# photos' capture time (oldest first; without one, last).
Order = Literal["written", "taken_at"]
MAX_PAGE: Final = 200
CURSOR_MAX: Final = 2048
# Index keys one listing call asks for, at least (stale entries are passed over).
TAKEN_LIST_MIN: Final = 20
# The most index entries one page looks at: past them (stale entries the janitor has not
# collected yet) it answers what it found with a cursor, so no request runs unbounded.
TAKEN_SCAN_MAX: Final = 2000


@dataclass(frozen=True)
class Position:
    modified: datetime
    key: str


def newest_first(listed: Sequence[ListedManifest]) -> list[ListedManifest]:
    # Newest first; ties (one second of S3 time) by key, so the order is total.
    by_key = sorted(listed, key=lambda entry: entry.key)
    return sorted(by_key, key=lambda entry: entry.modified, reverse=True)


def after(ordered: Sequence[ListedManifest], position: Position | None) -> list[ListedManifest]:
    """The entries that come after `position` in newest-first order."""
    if position is None:
        return list(ordered)
    return [
        entry
        for entry in ordered
        if entry.modified < position.modified
        or (entry.modified == position.modified and entry.key > position.key)
    ]


def encode_cursor(collection: str, state: StateFilter, position: Position) -> str:
    raw = json.dumps(
        {"c": collection, "s": state, "t": position.modified.isoformat(), "k": position.key},
        separators=(",", ":"),
    )
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, collection: str, state: StateFilter) -> Position:
    """The position a cursor of this list names; 422 `invalid_cursor` for anything else."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        fields = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if fields["c"] != collection or fields["s"] != state:
            raise ValueError("the cursor belongs to another list")
        modified = datetime.fromisoformat(fields["t"])
        if modified.tzinfo is None:
            raise ValueError("a cursor's time has a zone, as the store's times do")
        return Position(modified, str(fields["k"]))
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ApiError(
            422, "invalid_cursor", "the cursor is not one this list gave out; start again"
        ) from None


def wanted(stored: StoredManifest, state: StateFilter) -> bool:
    if state == "all":
        return True
    return stored.manifest.is_tombstone == (state == "deleted")


@dataclass(frozen=True)
class Page:
    entries: list[tuple[ListedManifest, StoredManifest]]
    next_position: Position | None


async def page(
    candidates: Sequence[ListedManifest],
    state: StateFilter,
    limit: int,
    read: Callable[[ListedManifest], Awaitable[StoredManifest | None]],
) -> Page:
    """Up to `limit` entries of `candidates` (in order) whose manifest is in `state`.

    Manifests are read `limit` at a time, concurrently; a filtered-out or vanished one
    is passed over. The next position is the last candidate looked at, if any remain.
    """
    taken: list[tuple[ListedManifest, StoredManifest]] = []
    consumed = 0
    while len(taken) < limit and consumed < len(candidates):
        chunk = list(candidates[consumed : consumed + limit])
        manifests = await asyncio.gather(*(read(entry) for entry in chunk))
        for entry, stored in zip(chunk, manifests, strict=True):
            consumed += 1
            if stored is not None and wanted(stored, state):
                taken.append((entry, stored))
                if len(taken) == limit:
                    break
    if consumed >= len(candidates):
        return Page(taken, None)
    last = candidates[consumed - 1]
    return Page(taken, Position(last.modified, last.key))


def encode_taken_cursor(collection: str, key: str) -> str:
    raw = json.dumps({"c": collection, "o": "taken_at", "k": key}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_taken_cursor(cursor: str, collection: str) -> str:
    """The index key a cursor of this collection's taken_at list names; 422
    `invalid_cursor` for anything else (another list's, another collection's, forged)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        fields = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if fields["c"] != collection or fields["o"] != "taken_at":
            raise ValueError("the cursor belongs to another list")
        key = fields["k"]
        if not isinstance(key, str) or not key.startswith(keys.taken_prefix(collection)):
            raise ValueError("the cursor names no place in this collection's index")
        return key
    except (ValueError, KeyError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ApiError(
            422, "invalid_cursor", "the cursor is not one this list gave out; start again"
        ) from None


def current(entry: IndexEntry, stored: StoredManifest | None) -> bool:
    """Whether an index entry stands for its asset now: the manifest is live at its version."""
    return (
        stored is not None
        and not stored.manifest.is_tombstone
        and stored.manifest.version == entry.version
    )


@dataclass(frozen=True)
class TakenPage:
    entries: list[tuple[IndexEntry, StoredManifest]]
    # The last index key looked at, when more may follow; None on the last page.
    next_key: str | None


async def taken_page(
    list_from: Callable[[str | None, int], Awaitable[tuple[list[IndexEntry], bool]]],
    read: Callable[[IndexEntry], Awaitable[StoredManifest | None]],
    limit: int,
    after: str | None,
    scan_max: int = TAKEN_SCAN_MAX,
) -> TakenPage:
    """Up to `limit` current entries of the index after `after`, in its order.

    Lists a little more than a page at a time and reads the listed entries' manifests
    only as many at once as the page still lacks (concurrently), so a page with no stale
    entries reads exactly `limit` manifests. Past `scan_max` entries looked at, the page
    ends short with a cursor.
    """
    taken: list[tuple[IndexEntry, StoredManifest]] = []
    last, scanned = after, 0
    while True:
        listed, more = await list_from(last, min(1000, max(2 * limit, TAKEN_LIST_MIN)))
        consumed = 0
        while consumed < len(listed) and len(taken) < limit:
            chunk = listed[consumed : consumed + limit - len(taken)]
            manifests = await asyncio.gather(
                *(read(entry) if entry.valid else _nothing() for entry in chunk)
            )
            for entry, stored in zip(chunk, manifests, strict=True):
                consumed += 1
                if stored is not None and current(entry, stored):
                    taken.append((entry, stored))
            last = chunk[-1].key
        scanned += consumed
        if len(taken) == limit:
            return TakenPage(taken, last if consumed < len(listed) or more else None)
        if not more or not listed:
            return TakenPage(taken, None)
        if scanned >= scan_max:
            return TakenPage(taken, last)


async def _nothing() -> None:
    return None
