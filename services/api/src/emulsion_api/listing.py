"""Pages of a collection's assets, newest first, with opaque cursors.

The object store lists keys in name order; a gallery wants the newest first. So a page
is cut from the whole listing ordered by write time (newest first, then by key), and
its cursor names the last entry it took: the next page starts after that entry in the
same order. An asset written after the first page was read moves to the front, so a
client paging on sees it only when it starts again (as with any newest-first feed).
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
from emulsion_api.store import ListedManifest, StoredManifest

# `state` of the list: live assets (the default), tombstones of deleted ones, or both.
StateFilter = Literal["live", "deleted", "all"]
MAX_PAGE: Final = 200
CURSOR_MAX: Final = 2048


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
