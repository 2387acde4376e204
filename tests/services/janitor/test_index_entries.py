"""The capture-order index (`taken/`) on the real MinIO: the full sweep takes the entries
of superseded, stale and deleted versions and keeps the live version's (whatever its time
segment) and a newer one still in flight; nothing is left stale for good."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from emulsion_contracts import keys
from emulsion_devstack.stack import Endpoints
from emulsion_janitor.settings import JanitorSettings
from emulsion_janitor.sweep import SweepReport

from .conftest import Layout, sweep_once, version_id

Settings = Callable[..., JanitorSettings]
HOUR = 3600.0
WHEN = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)


def entry(collection: str, asset: str, version: str, taken_at: datetime | None = WHEN) -> str:
    return keys.taken_key(collection, asset, version, taken_at)


def test_the_sweep_takes_stale_index_entries_and_keeps_live_and_in_flight_ones(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    # A re-uploaded asset: its old version's entry is superseded, the new one's is live.
    old, new = layout.reingested(collection, "moved.jpg")
    live = layout.commit(new)
    live_entry = live.taken_key()
    assert live_entry is not None
    # The live version's entry under another time (written by a processor that read the
    # time otherwise) is still the live version's: kept.
    other_time = entry(collection, "moved.jpg", new.version)
    superseded = entry(collection, "moved.jpg", old.version)
    # An item older than the live version that lost its commit, and one still in flight.
    stale = entry(collection, "moved.jpg", version_id(time.time() - 3600))
    in_flight = entry(collection, "moved.jpg", version_id(time.time() + 60))
    # A deleted asset: its last version's entry goes with its files.
    gone = layout.version(collection, "gone.jpg")
    gone_entry = layout.commit(gone).taken_key()
    assert gone_entry is not None
    time.sleep(0.01)
    layout.tombstone(collection, "gone.jpg")
    written = [live_entry, other_time, superseded, stale, in_flight, gone_entry]
    layout.put_many(written)

    report: SweepReport = run(sweep_once(stack, s3, settings_for(orphan_age=HOUR)))

    assert layout.present(written) == {live_entry, other_time, in_flight}
    assert report.deletion.deleted >= 3
    # Once the item in flight is an orphan (it never committed), it goes too.
    run(sweep_once(stack, s3, settings_for(orphan_age=0.0)))
    assert layout.present(written) == {live_entry, other_time}
