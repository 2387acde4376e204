"""The full reconciliation pass: paced by count, resumable from its stored place, and the
net under every GC request that never came. The hourly sweep lists staging/
alone; everything else a lost request left is the pass's.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulsion_contracts import keys
from emulsion_devstack.stack import Endpoints
from emulsion_janitor.deleter import Deleter
from emulsion_janitor.leases import KvLeases
from emulsion_janitor.service import pass_due_in
from emulsion_janitor.settings import JanitorSettings
from emulsion_janitor.store import PROGRESS_KEY, PassProgress, read_progress
from emulsion_janitor.sweep import SWEPT_PREFIXES, Pace, Sweeper, SweepReport

from .conftest import Layout, connected, version_id, wait_for
from .test_service import CONSOLE_SCRIPT, environment

Settings = Callable[..., JanitorSettings]
STAGING_COLLECTION = "janitor-uploads"
# Listing order of the pass's stages: a key's place in the pass is (stage, key).
STAGES = SWEPT_PREFIXES


class FakeClock:
    """Time that passes only when the pace waits: the pace is judged by the keys the
    store answered per second of this clock, never by how long a test slept."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float, stopping: asyncio.Event) -> None:
        self.now += seconds


class Listed:
    """Every key the store's ListObjectsV2 answered, with the fake time it answered at."""

    def __init__(self, s3: Any, clock: FakeClock | None = None) -> None:
        self.s3 = s3
        self.clock = clock
        self.answers: list[tuple[float, list[str]]] = []
        s3.meta.events.register("after-call.s3.ListObjectsV2", self._record)

    def _record(self, parsed: dict[str, Any], **_: Any) -> None:
        listed = [item["Key"] for item in parsed.get("Contents", ())]
        self.answers.append((self.clock() if self.clock else 0.0, listed))

    def close(self) -> None:
        self.s3.meta.events.unregister("after-call.s3.ListObjectsV2", self._record)

    def keys(self, prefixes: tuple[str, ...] = STAGES) -> list[str]:
        return [key for _, page in self.answers for key in page if key.startswith(prefixes)]


async def full_pass(
    stack: Endpoints,
    s3: Any,
    settings: JanitorSettings,
    pace: Pace,
    stopping: asyncio.Event | None = None,
) -> SweepReport:
    async with connected(stack) as bus:
        leases = await KvLeases.bind(bus.js)
        sweeper = Sweeper(s3, Deleter(s3, leases, settings, "sweep"), settings)
        return await sweeper.full_pass(stopping, pace)


async def routine(stack: Endpoints, s3: Any, settings: JanitorSettings) -> SweepReport:
    async with connected(stack) as bus:
        leases = await KvLeases.bind(bus.js)
        return await Sweeper(s3, Deleter(s3, leases, settings, "sweep"), settings).routine()


def populate(
    layout: Layout, collection: str, assets: int, uploads: int
) -> tuple[set[str], set[str]]:
    """Assets each with a live and a superseded version whose GC request was lost, and
    abandoned uploads each with its claim marker: (doomed keys, kept keys)."""
    doomed: set[str] = set()
    kept: set[str] = set()
    for n in range(assets):
        asset = f"IMG_{n:04d}.jpg"
        old = layout.version(collection, asset, version_id(datetime.now(UTC).timestamp() - 60))
        new = layout.version(collection, asset)
        layout.commit(new)
        doomed.update(old.keys)
        kept.update(new.keys)
    for n in range(uploads):
        upload = keys.staging_key(STAGING_COLLECTION, keys.new_ulid(), f"IMG_{n:04d}.jpg")
        doomed.add(layout.put(keys.claim_key(upload), b"{}"))
        doomed.add(layout.put(upload))
    return doomed, kept


def place(key: str) -> tuple[int, str]:
    return next(n for n, prefix in enumerate(STAGES) if key.startswith(prefix)), key


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(min_value=0.5, max_value=5000),
    answers=st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=40),
)
def test_the_pace_keeps_keys_listed_within_the_rate_plus_one_page(
    rate: float, answers: list[int]
) -> None:
    """Whatever the rate and however full each page comes back, the keys listed by any
    moment are at most the rate times the time since the pass began plus one page, and
    the pass waits no longer than that needs."""
    clock = FakeClock()
    pace = Pace(rate, clock, clock.sleep)
    began = clock()
    listed = 0
    for answer in answers:
        page = min(answer, pace.page_size)
        listed += page
        assert listed <= rate * (clock() - began) + pace.page_size + 1e-6
        asyncio.run(pace.take(page, asyncio.Event()))
        assert clock() - began <= listed / rate + 1e-6


def test_a_write_whose_gc_request_was_lost_is_left_by_the_hourly_sweep_and_cleaned_by_the_pass(
    stack: Endpoints, s3: Any, run: Any, layout: Layout, collection: str, settings_for: Settings
) -> None:
    doomed, kept = populate(layout, collection, assets=3, uploads=0)
    settings = settings_for()

    hourly = run(routine(stack, s3, settings))
    assert hourly.scanned == 0  # staging/ is empty: versions are not the hourly sweep's
    assert layout.present(sorted(doomed)) == doomed

    clock = FakeClock()
    report = run(full_pass(stack, s3, settings, Pace(1000, clock, clock.sleep)))
    assert report.deletion.deleted == len(doomed)
    assert layout.present(sorted(doomed)) == set()
    assert layout.present(sorted(kept)) == kept
    progress = read_progress(s3, layout.bucket)
    assert progress is not None and progress.finished

    # Twice is harmless: the next pass begins anew and finds nothing to delete.
    again = run(full_pass(stack, s3, settings, Pace(1000, clock, clock.sleep)))
    assert (again.deletion.deleted, again.scanned) == (0, len(kept))
    assert layout.present(sorted(kept)) == kept


def test_the_pass_lists_no_faster_than_its_rate_counted_in_keys_the_store_answered(
    stack: Endpoints, s3: Any, run: Any, layout: Layout, collection: str, settings_for: Settings
) -> None:
    populate(layout, collection, assets=20, uploads=40)  # 200 + 80 keys in the areas
    rate = 25.0
    clock = FakeClock()
    pace = Pace(rate, clock, clock.sleep)
    listed = Listed(s3, clock)
    try:
        run(full_pass(stack, s3, settings_for(), pace))
    finally:
        listed.close()
    began = listed.answers[0][0]
    total = 0
    for answered_at, page in listed.answers:
        total += len(page)
        assert len(page) <= pace.page_size
        assert total <= rate * (answered_at - began) + pace.page_size + 1e-6
    assert total >= 280
    # Paced, not stalled: it took about as long as its keys at the rate.
    assert clock() - began <= total / rate + 1


@pytest.mark.parametrize("stop_after_keys", [1, 20, 95, 150, 210, 279])
def test_a_stopped_pass_resumes_after_its_last_finished_page_and_skips_nothing(
    stack: Endpoints,
    s3: Any,
    run: Any,
    layout: Layout,
    collection: str,
    settings_for: Settings,
    stop_after_keys: int,
) -> None:
    """Stopped anywhere (in staging/ between a claim marker and its upload too), the pass
    goes on after the last page it finished: every key is listed, at most one page twice,
    every doomed key goes and every live one stays."""
    doomed, kept = populate(layout, collection, assets=20, uploads=40)
    settings = settings_for()
    clock = FakeClock()
    stopping = asyncio.Event()

    async def stop_when_far_enough(seconds: float, event: asyncio.Event) -> None:
        await clock.sleep(seconds, event)
        if first_pace.taken >= stop_after_keys:
            stopping.set()

    first_pace = Pace(20, clock, stop_when_far_enough)
    first = Listed(s3)
    try:
        stopped = run(full_pass(stack, s3, settings, first_pace, stopping))
    finally:
        first.close()
    assert stopped.interrupted
    progress = read_progress(s3, layout.bucket)
    assert progress is not None and not progress.finished

    second = Listed(s3)
    try:
        run(full_pass(stack, s3, settings, Pace(20, clock, clock.sleep)))
    finally:
        second.close()
    once, again = first.keys(), second.keys()
    assert set(once) | set(again) == doomed | kept  # none skipped
    assert len(set(once) & set(again)) <= first_pace.page_size  # at most a page twice
    assert layout.present(sorted(doomed)) == set()
    assert layout.present(sorted(kept)) == kept
    finished = read_progress(s3, layout.bucket)
    assert finished is not None and finished.finished
    assert finished.started_at == progress.started_at  # the same pass, finished


def test_the_janitor_killed_mid_pass_goes_on_from_its_stored_place(
    stack: Endpoints, s3: Any, layout: Layout, collection: str
) -> None:
    """The process as the chart runs it, SIGKILLed during the pass (no chance to save
    anything more): the next one lists exactly the keys after the stored place."""
    doomed, kept = populate(layout, collection, assets=30, uploads=60)  # 300 + 120 keys
    env = environment(
        stack,
        EMULSION_BUCKET=layout.bucket,
        EMULSION_GC_GRACE_SECONDS="0",
        EMULSION_UPLOAD_TTL_SECONDS="0",
        EMULSION_JANITOR_ORPHAN_SECONDS="0",
        # 20 keys a page, a page a second: the pass takes about 20 s, time to kill it.
        EMULSION_JANITOR_FULL_PASS_KEYS_PER_SECOND="20",
    )
    killed = subprocess.Popen(
        [str(CONSOLE_SCRIPT), "--full-pass-once"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:

        def far_enough() -> PassProgress | None:
            progress = read_progress(s3, layout.bucket)
            # Past staging/, into the versions: a place inside an area, not at its start.
            if progress is not None and progress.after and progress.prefix == keys.ORIGINALS:
                return progress
            return None

        wait_for("the pass to get into originals/", far_enough, timeout=60)
    finally:
        os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(timeout=30)
    stored = read_progress(s3, layout.bucket)
    assert stored is not None and not stored.finished
    assert stored.prefix is not None and stored.after is not None
    cursor = (STAGES.index(stored.prefix), stored.after)
    still_there = [
        item["Key"]
        for prefix in STAGES
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=layout.bucket, Prefix=prefix
        )
        for item in page.get("Contents", ())
    ]
    after_the_place = [key for key in still_there if place(key) > cursor]

    resumed = subprocess.run(
        [str(CONSOLE_SCRIPT), "--full-pass-once"],
        env={**env, "EMULSION_JANITOR_FULL_PASS_KEYS_PER_SECOND": "1000"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    summary = json.loads(resumed.stdout)
    assert summary["scanned"] == len(after_the_place)
    assert layout.present(sorted(doomed)) == set()
    assert layout.present(sorted(kept)) == kept
    finished = read_progress(s3, layout.bucket)
    assert finished is not None and finished.finished
    assert finished.started_at == stored.started_at


def test_the_progress_object_is_outside_every_area_the_guards_let_go() -> None:
    assert keys.parse_key(PROGRESS_KEY) is None
    assert not PROGRESS_KEY.startswith(keys.PREFIXES)


@settings(max_examples=200, deadline=None)
@given(
    interval=st.floats(min_value=1, max_value=30 * 86400),
    since=st.floats(min_value=0, max_value=60 * 86400),
    finished=st.booleans(),
)
def test_a_pass_is_due_at_once_if_unfinished_else_an_interval_after_the_last_began(
    interval: float, since: float, finished: bool
) -> None:
    now = datetime(2026, 12, 7, tzinfo=UTC)
    started = now - timedelta(seconds=since)
    progress = PassProgress(
        started_at=started,
        prefix=None if finished else keys.ORIGINALS,
        finished_at=now if finished else None,
    )
    due = pass_due_in(progress, interval, now)
    if finished:
        assert due == pytest.approx(interval - since)
    else:
        assert due == 0.0
    assert pass_due_in(None, interval, now) == 0.0


def test_a_dry_run_pass_deletes_nothing_and_leaves_the_real_pass_s_place_alone(
    stack: Endpoints, s3: Any, run: Any, layout: Layout, collection: str, settings_for: Settings
) -> None:
    doomed, kept = populate(layout, collection, assets=2, uploads=2)
    clock = FakeClock()
    report = run(full_pass(stack, s3, settings_for(dry_run=True), Pace(1000, clock, clock.sleep)))
    assert report.deletion.refused  # it found them, and only reported them
    assert layout.present(sorted(doomed | kept)) == doomed | kept
    assert read_progress(s3, layout.bucket) is None
