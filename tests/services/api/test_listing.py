"""Newest-first pages with cursors: paging through covers each wanted entry exactly once,
in order, whatever the page size, the ties in time and the mix of live and deleted."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import cast

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulsion_api import listing
from emulsion_api.errors import ApiError
from emulsion_api.store import ListedManifest, StoredManifest

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


def _stored(tombstone: bool) -> StoredManifest:
    return cast(StoredManifest, SimpleNamespace(manifest=SimpleNamespace(is_tombstone=tombstone)))


entries = st.lists(st.tuples(st.integers(0, 5), st.booleans(), st.booleans()), max_size=25).map(
    lambda rows: [
        (ListedManifest(f"assets/c/a{i}.json", f"a{i}", EPOCH + timedelta(seconds=t)), dead, gone)
        for i, (t, dead, gone) in enumerate(rows)
    ]
)


@given(entries, st.integers(1, 7), st.sampled_from(["live", "deleted", "all"]))
def test_pages_cover_every_wanted_entry_once_newest_first(
    rows: list[tuple[ListedManifest, bool, bool]], limit: int, state: listing.StateFilter
) -> None:
    # `gone`: deleted from the store between the listing and the read.
    stored = {entry.key: None if gone else _stored(dead) for entry, dead, gone in rows}
    ordered = listing.newest_first([entry for entry, _, _ in rows])

    async def read(entry: ListedManifest) -> StoredManifest | None:
        return stored[entry.key]

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(len(rows) + 2):
        position = listing.decode_cursor(cursor, "c", state) if cursor else None
        page = asyncio.run(listing.page(listing.after(ordered, position), state, limit, read))
        assert len(page.entries) <= limit
        seen += [entry.key for entry, _ in page.entries]
        if page.next_position is None:
            break
        cursor = listing.encode_cursor("c", state, page.next_position)
    else:
        pytest.fail("paging did not end")

    expected = [
        entry.key
        for entry in ordered
        if (found := stored[entry.key]) is not None and listing.wanted(found, state)
    ]
    assert seen == expected
    times = [next(e.modified for e, _, _ in rows if e.key == key) for key in seen]
    assert times == sorted(times, reverse=True)


@given(st.text(max_size=60))
def test_any_other_cursor_is_invalid_cursor_never_a_crash(cursor: str) -> None:
    try:
        listing.decode_cursor(cursor, "c", "live")
    except ApiError as error:
        assert error.code == "invalid_cursor"


def test_a_forged_cursor_without_a_time_zone_is_invalid() -> None:
    # Comparing it with the store's (zoned) times would fail mid-request.
    forged = listing.encode_cursor("c", "live", listing.Position(EPOCH, "k")).encode()
    fields = json.loads(base64.urlsafe_b64decode(forged + b"=" * (-len(forged) % 4)))
    fields["t"] = "2026-01-01T00:00:00"
    cursor = base64.urlsafe_b64encode(json.dumps(fields).encode()).decode()
    with pytest.raises(ApiError) as refused:
        listing.decode_cursor(cursor, "c", "live")
    assert refused.value.code == "invalid_cursor"
