"""The safety-net sweep on the real MinIO and NATS (each test in a bucket of its own)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from emulsion_contracts import keys
from emulsion_devstack.stack import Endpoints
from emulsion_janitor.deleter import Deleter
from emulsion_janitor.guards import Budget, Guard, StoredObject
from emulsion_janitor.leases import KvLeases
from emulsion_janitor.settings import JanitorSettings
from emulsion_janitor.store import stat
from emulsion_janitor.sweep import SweepReport

from .conftest import (
    Layout,
    connected,
    make_bucket,
    metric,
    refusals,
    sweep_once,
    version_id,
    wait_for,
)

Settings = Callable[..., JanitorSettings]
HOUR = 3600.0

# The collection the uploads in these tests were presigned for.
STAGING_COLLECTION = "janitor-uploads"


def sweep(stack: Endpoints, s3: Any, run: Any, settings: JanitorSettings) -> SweepReport:
    report: SweepReport = run(sweep_once(stack, s3, settings))
    return report


def sweep_until(
    what: str,
    done: Callable[[], bool],
    stack: Endpoints,
    s3: Any,
    run: Any,
    settings: JanitorSettings,
    within: float = 30.0,
) -> list[SweepReport]:
    """Sweep again and again (as the periodic sweep would) until `done`, with a deadline."""
    reports: list[SweepReport] = []

    def swept_and_done() -> bool:
        reports.append(sweep(stack, s3, run, settings))
        return done()

    wait_for(what, swept_and_done, within)
    return reports


def last_modified(s3: Any, bucket: str, prefix: str) -> datetime:
    """The newest LastModified under `prefix`, from the listing (milliseconds, unlike HEAD)."""
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix)
    newest: datetime = max(item["LastModified"] for item in listing["Contents"])
    return newest


def test_a_lost_gc_message_the_sweep_still_removes_the_superseded_version(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    old = layout.version(collection, "IMG_0101.jpg")
    layout.commit(old)
    new = layout.version(collection, "IMG_0101.jpg")
    layout.commit(new)
    # Nobody publishes the superseded request: the sweep alone must find the old version.
    written = max(
        last_modified(s3, layout.bucket, f"{area}/{collection}/IMG_0101.jpg/{old.version}/")
        for area in ("originals", "derivatives")
    )

    young = sweep(stack, s3, run, settings_for(gc_grace_seconds=HOUR))
    assert layout.present(old.keys) == set(old.keys), "deleted within the grace period"
    assert young.deletion.deleted == 0

    grace = 2.0
    reports = sweep_until(
        "the superseded version to go",
        lambda: not layout.present(old.keys),
        stack,
        s3,
        run,
        settings_for(gc_grace_seconds=grace),
    )
    assert datetime.now(UTC) >= written + timedelta(seconds=grace)
    assert sum(r.deletion.deleted for r in reports) == len(old.keys)
    assert layout.present(new.keys) == set(new.keys)
    assert layout.exists(keys.manifest_key(collection, "IMG_0101.jpg"))


def test_a_stale_version_goes_and_a_newer_one_in_flight_stays(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    live = layout.version(collection, "IMG_0102.jpg", version_id(time.time() - 60))
    layout.commit(live)
    # An earlier job that finished last (its commit was stale), and a later job's item
    # that has written its keys but not yet committed.
    stale = layout.version(collection, "IMG_0102.jpg", version_id(time.time() - 120))
    in_flight = layout.version(collection, "IMG_0102.jpg", version_id())

    report = sweep(stack, s3, run, settings_for(orphan_age=HOUR))

    assert layout.present(stale.keys) == set()
    assert layout.present(live.keys) == set(live.keys)
    assert layout.present(in_flight.keys) == set(in_flight.keys)
    assert report.deletion.deleted == len(stale.keys)


def test_abandoned_staging_upload_goes_after_the_ttl_and_a_leased_one_stays(
    stack: Endpoints, s3: Any, layout: Layout, settings_for: Settings, run: Any
) -> None:
    abandoned_id, leased_id = keys.new_ulid(), keys.new_ulid()
    abandoned = layout.put(keys.staging_key(STAGING_COLLECTION, abandoned_id, "IMG_0103.jpg"))
    leased = layout.put(keys.staging_key(STAGING_COLLECTION, leased_id, "IMG_0104.jpg"))
    # Claim markers go with their uploads, under the same guards; an upload of the old
    # layout (before keys named their collection) is still swept.
    abandoned_claim = layout.put(keys.claim_key(abandoned), b"{}")
    leased_claim = layout.put(keys.claim_key(leased), b"{}")
    legacy = layout.put(f"staging/{keys.new_ulid()}/IMG_0103.jpg")
    abandoned_together = [abandoned, abandoned_claim, legacy]
    lease_refusals = refusals("leased")

    async def lease(held: bool) -> None:
        async with connected(stack) as bus:
            await (bus.lease(leased_id) if held else bus.release(leased_id))

    run(lease(True))
    try:
        sweep(stack, s3, run, settings_for(upload_ttl=HOUR))
        everything = [*abandoned_together, leased, leased_claim]
        assert layout.present(everything) == set(everything), "swept before the TTL"

        # Both uploads pass the TTL within a sweep or two of each other (the second was
        # written a little later), so sweep until the abandoned one has gone and the
        # leased one has been considered and refused.
        sweep_until(
            "the abandoned upload to go and the leased one to be refused",
            lambda: (
                not layout.present(abandoned_together) and refusals("leased") >= lease_refusals + 2
            ),
            stack,
            s3,
            run,
            settings_for(upload_ttl=1.0),
        )
        assert layout.present([leased, leased_claim]) == {leased, leased_claim}, (
            "swept an upload a running job references"
        )
    finally:
        run(lease(False))
    # The job ended and released its lease: now the upload is abandoned too.
    sweep(stack, s3, run, settings_for(upload_ttl=1.0))
    assert layout.present([leased, leased_claim]) == set()


def test_a_claim_marker_stays_while_a_replayed_upload_sits_beside_it(
    stack: Endpoints, s3: Any, layout: Layout, settings_for: Settings, run: Any
) -> None:
    """A form replayed after the promotion writes the upload anew, later than
    its marker; the marker is what keeps the key from being ingested again, so it goes
    only with the upload."""
    ttl = 5.0
    key = keys.staging_key(STAGING_COLLECTION, keys.new_ulid(), "IMG_0111.jpg")
    marker = layout.put(keys.claim_key(key), b"{}")

    def marker_past_the_ttl() -> bool:
        written = last_modified(s3, layout.bucket, marker)
        return datetime.now(UTC) - written > timedelta(seconds=ttl)

    wait_for("the marker to pass the upload TTL", marker_past_the_ttl, 30)
    layout.put(key)  # the replay

    sweep(stack, s3, run, settings_for(upload_ttl=ttl))
    assert layout.present([marker, key]) == {marker, key}

    # Once the replayed upload is past the TTL as well, both go.
    sweep_until(
        "the upload and its marker to go",
        lambda: not layout.present([marker, key]),
        stack,
        s3,
        run,
        settings_for(upload_ttl=ttl),
    )


def test_keys_outside_the_prefixes_and_the_layout_are_untouched(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    untouchable = [
        layout.put(keys.manifest_key(collection, "IMG_0105.jpg"), b"{}"),
        layout.put("other/IMG_0105.jpg"),
        layout.put("Staging/01J00000000000000000000000/x.jpg"),
        layout.put(f"originals/{collection}/loose.jpg"),
        layout.put(f"derivatives/{collection}/IMG_0105.jpg/not-a-version/thumb.jpg"),
        layout.put("staging/not-an-upload-id/x.jpg"),
        layout.put(f"staging/{keys.new_ulid()}/nested/x.jpg"),
    ]
    # Something the sweep does delete, so it is known to have run over these prefixes.
    abandoned = layout.put(keys.staging_key(STAGING_COLLECTION, keys.new_ulid(), "x.jpg"))

    report = sweep(stack, s3, run, settings_for())

    assert not layout.exists(abandoned)
    assert layout.present(untouchable) == set(untouchable)
    assert report.unrecognised == 4  # those under staging/, originals/ and derivatives/


def test_a_deleted_asset_loses_every_version_and_its_neighbours_stay(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    versions = [layout.version(collection, "IMG_0106") for _ in range(3)]
    layout.commit(versions[-1])
    # Names that share the deleted one's prefix, listed right before and after it.
    neighbours = [layout.version(collection, name) for name in ("IMG_0106.jpg", "IMG_0106_b")]
    for neighbour in neighbours:
        layout.commit(neighbour)
    layout.forget(collection, "IMG_0106")  # the API deleted the asset

    report = sweep(stack, s3, run, settings_for())

    doomed = [key for version in versions for key in version.keys]
    assert layout.present(doomed) == set()
    for neighbour in neighbours:
        assert layout.present(neighbour.keys) == set(neighbour.keys)
    assert report.deletion.deleted == len(doomed)


def test_dry_run_deletes_nothing_and_reports_what_a_real_run_deletes(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    superseded = layout.version(collection, "IMG_0107.jpg")
    layout.commit(superseded)
    live = layout.version(collection, "IMG_0107.jpg")
    layout.commit(live)
    deleted = layout.version(collection, "IMG_0108.jpg")
    abandoned = layout.put(keys.staging_key(STAGING_COLLECTION, keys.new_ulid(), "IMG_0109.jpg"))
    everything = [*superseded.keys, *live.keys, *deleted.keys, abandoned]
    doomed = [*superseded.keys, *deleted.keys, abandoned]

    dry = sweep(stack, s3, run, settings_for(dry_run=True))

    assert layout.present(everything) == set(everything)
    assert dry.deletion.deleted == 0
    assert dry.deletion.refused[Guard.DRY_RUN] == len(doomed)

    real = sweep(stack, s3, run, settings_for())
    assert real.deletion.deleted == len(doomed)
    assert layout.present(everything) == set(live.keys)


def test_the_cap_stops_a_sweep_with_a_clear_log_line_and_the_next_one_goes_on(
    stack: Endpoints,
    s3: Any,
    layout: Layout,
    settings_for: Settings,
    run: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:
    uploads = [
        layout.put(keys.staging_key(STAGING_COLLECTION, keys.new_ulid(), f"IMG_{n}.jpg"))
        for n in range(7)
    ]
    capped = settings_for(max_deletions_per_sweep=3)

    with caplog.at_level(logging.WARNING, logger="emulsion_janitor.sweep"):
        first = sweep(stack, s3, run, capped)

    assert (first.capped, first.deletion.deleted) == (True, 3)
    assert len(layout.present(uploads)) == 4
    cap_lines = [r.getMessage() for r in caplog.records if "deletion cap" in r.getMessage()]
    assert cap_lines == [
        "sweep reached its deletion cap of 3 keys (EMULSION_JANITOR_MAX_DELETIONS_PER_SWEEP);"
        " the rest waits for the next sweep"
    ]
    second = sweep(stack, s3, run, capped)
    third = sweep(stack, s3, run, capped)
    assert (second.deletion.deleted, third.deletion.deleted, third.capped) == (3, 1, False)
    assert layout.present(uploads) == set()


def test_a_deleter_bound_to_another_bucket_deletes_nothing(
    stack: Endpoints, s3: Any, layout: Layout, settings_for: Settings, run: Any
) -> None:
    other = make_bucket(s3)
    stray = keys.staging_key(STAGING_COLLECTION, keys.new_ulid(), "IMG_0110.jpg")
    s3.put_object(Bucket=other, Key=stray, Body=b"x")
    stored = stat(s3, other, stray)
    assert stored is not None
    before = refusals("bucket")

    async def delete(objects: list[StoredObject]) -> Any:
        async with connected(stack) as bus:
            deleter = Deleter(s3, await KvLeases.bind(bus.js), settings_for(), "gc", bucket=other)
            return await deleter.delete(objects, "abandoned", Budget(None))

    report = run(delete([stored]))

    assert (report.deleted, report.refused[Guard.BUCKET]) == (0, 1)
    assert refusals("bucket") - before == 1
    assert stat(s3, other, stray) is not None


def test_sweep_metrics_count_deletions_by_reason_and_bytes_freed(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    deleted = layout.version(collection, "IMG_0111.jpg")
    counted_before = metric("emulsion_janitor_deleted_keys_total", reason="deleted", source="sweep")
    bytes_before = metric("emulsion_janitor_freed_bytes_total", reason="deleted", source="sweep")
    sweeps_before = metric("emulsion_janitor_sweep_duration_seconds_count")

    sweep(stack, s3, run, settings_for())

    counted = metric("emulsion_janitor_deleted_keys_total", reason="deleted", source="sweep")
    freed = metric("emulsion_janitor_freed_bytes_total", reason="deleted", source="sweep")
    assert counted - counted_before == len(deleted.keys)
    assert freed - bytes_before == len(deleted.keys) * 100
    assert metric("emulsion_janitor_sweep_duration_seconds_count") - sweeps_before == 1


def test_a_version_superseded_just_now_keeps_its_grace_however_old_its_keys_are(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    grace = 3.0
    settings = settings_for(gc_grace_seconds=grace)
    old = layout.version(collection, "IMG_0112.jpg")
    layout.commit(old)
    written = max(
        last_modified(s3, layout.bucket, f"{area}/{collection}/IMG_0112.jpg/{old.version}/")
        for area in ("originals", "derivatives")
    )
    # The old keys age past the grace period while they are still live...
    wait_for(
        "the old keys to be older than the grace period",
        lambda: datetime.now(UTC) > written + timedelta(seconds=grace + 1),
    )
    # ...and only then does a new version supersede them.
    superseded_at = layout.commit(layout.version(collection, "IMG_0112.jpg")).committed_at

    at_once = sweep(stack, s3, run, settings)
    assert layout.present(old.keys) == set(old.keys), "deleted within the supersession's grace"
    assert at_once.deletion.deleted == 0

    sweep_until(
        "the superseded version to go",
        lambda: not layout.present(old.keys),
        stack,
        s3,
        run,
        settings,
    )
    assert datetime.now(UTC) >= superseded_at + timedelta(seconds=grace)


def test_a_deleted_assets_versions_go_and_its_tombstone_only_after_it_was_kept(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    versions = [layout.version(collection, "IMG_0113.jpg") for _ in range(2)]
    layout.commit(versions[-1])
    tombstone = layout.tombstone(collection, "IMG_0113.jpg")
    # Deleted, then ingested again: the new life's manifest is never a tombstone to remove.
    layout.tombstone(collection, "IMG_0114.jpg")
    reborn = layout.version(collection, "IMG_0114.jpg")
    layout.commit(reborn)
    doomed = [key for version in versions for key in version.keys]
    manifest = keys.manifest_key(collection, "IMG_0113.jpg")
    deleted_before = metric("emulsion_janitor_deleted_keys_total", reason="deleted", source="sweep")

    kept = sweep(stack, s3, run, settings_for(tombstone_keep=HOUR))
    assert layout.present(doomed) == set()
    assert metric(
        "emulsion_janitor_deleted_keys_total", reason="deleted", source="sweep"
    ) - deleted_before == len(doomed)
    assert kept.tombstones_removed == 0
    assert layout.exists(manifest), "removed a tombstone before its keep time"

    reports = sweep_until(
        "the tombstone to go",
        lambda: not layout.exists(manifest),
        stack,
        s3,
        run,
        settings_for(tombstone_keep=1.0),
    )
    assert sum(r.tombstones_removed for r in reports) == 1
    assert datetime.now(UTC) >= tombstone.committed_at + timedelta(seconds=1)
    assert layout.exists(keys.manifest_key(collection, "IMG_0114.jpg"))
    assert layout.present(reborn.keys) == set(reborn.keys)


@pytest.mark.parametrize(
    "asset",
    ["日本の美しい風景写真コレクション二千二十六年十二月七日撮影分その一.jpg", "<" * 150 + ".jpg"],
)
def test_an_asset_whose_segment_is_shortened_is_swept_by_its_segment(
    stack: Endpoints,
    s3: Any,
    layout: Layout,
    collection: str,
    settings_for: Settings,
    run: Any,
    asset: str,
) -> None:
    """Its keys do not hold its name (a readable prefix and a hash): the sweep finds the
    manifest by the segment, removes the stale version and keeps the live and newer ones."""
    segment = keys.asset_segment(asset)
    assert segment != keys.encoded_name(asset)
    live = layout.version(collection, asset, version_id(time.time() - 60))
    layout.commit(live)
    stale = layout.version(collection, asset, version_id(time.time() - 120))
    in_flight = layout.version(collection, asset, version_id())
    assert all(f"/{segment}/" in key for key in stale.keys)

    report = sweep(stack, s3, run, settings_for(orphan_age=HOUR))

    assert layout.present(stale.keys) == set()
    assert layout.present(live.keys) == set(live.keys)
    assert layout.present(in_flight.keys) == set(in_flight.keys)
    assert report.deletion.deleted == len(stale.keys)
    assert report.unrecognised == 0
