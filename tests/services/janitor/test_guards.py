"""The guards and the sweep's choice of candidates, as pure logic (no stack needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from emulsion_bench.janitor_bulk import placeholder_derivative, placeholder_manifest
from emulsion_contracts import keys
from emulsion_contracts.manifest import AssetManifest
from emulsion_janitor.guards import (
    Budget,
    Facts,
    Guard,
    Live,
    Policy,
    StoredObject,
    may_delete,
    tombstone_removable,
)
from emulsion_janitor.settings import JanitorSettings
from emulsion_janitor.sweep import Claims, select

BUCKET = "emulsion"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
GRACE = timedelta(minutes=5)
ORPHAN_AGE = timedelta(hours=1)
OLD = NOW - timedelta(hours=2)
COLLECTION = "gallery-1"
ASSET = "IMG_0001.jpg"
EARLIER = keys.version_id(keys.new_ulid(NOW.timestamp() - 600), 0)
LIVE_VERSION = keys.version_id(keys.new_ulid(NOW.timestamp() - 300), 0)
LATER = keys.version_id(keys.new_ulid(NOW.timestamp() - 60), 0)
UPLOAD = keys.new_ulid(NOW.timestamp())


def manifest(
    version: str = LIVE_VERSION, asset: str = ASSET, committed_at: datetime = OLD
) -> AssetManifest:
    return placeholder_manifest(
        COLLECTION,
        asset,
        version,
        keys.original_key(COLLECTION, asset, version, asset),
        [
            placeholder_derivative(
                "thumb", keys.derivative_key(COLLECTION, asset, version, "thumb", "jpg")
            )
        ],
        committed_at,
    )


LIVE = Live.of(manifest())


def original(version: str, asset: str = ASSET) -> str:
    return keys.original_key(COLLECTION, asset, version, asset)


def thumb(version: str) -> str:
    return keys.derivative_key(COLLECTION, ASSET, version, "thumb", "jpg")


def staged() -> str:
    return keys.staging_key(COLLECTION, UPLOAD, "IMG_0001.jpg")


def claimed() -> str:
    return keys.claim_key(staged())


def legacy() -> str:
    """An upload of the layout before keys named their collection."""
    return f"staging/{UPLOAD}/IMG_0001.jpg"


def check(
    key: str,
    facts: Facts,
    *,
    last_modified: datetime | None = OLD,
    bucket: str = BUCKET,
    dry_run: bool = False,
    budget: Budget | None = None,
) -> Guard | None:
    return may_delete(
        bucket,
        StoredObject(key, 10, last_modified),
        facts,
        Policy(BUCKET, GRACE, dry_run, ORPHAN_AGE),
        budget or Budget(None),
        NOW,
    )


def test_an_old_superseded_key_and_an_old_unleased_upload_may_go() -> None:
    assert check(original(EARLIER), Facts(live=LIVE)) is None
    assert check(thumb(EARLIER), Facts(live=LIVE)) is None
    assert check(staged(), Facts(leased=False)) is None


@pytest.mark.parametrize("key", [staged, claimed, legacy], ids=["upload", "claim", "legacy"])
def test_uploads_of_either_layout_and_claim_markers_are_guarded_alike(key: Any) -> None:
    """The claim marker goes by its upload's rules (the upload id's lease, the
    TTL from its own write), and the old layout is still swept."""
    assert check(key(), Facts(leased=False)) is None
    assert check(key(), Facts(leased=True)) is Guard.LEASED
    assert check(key(), Facts()) is Guard.LEASED  # a lease that could not be read
    ttl = settings()
    assert select(at(key(), timedelta(hours=25)), None, NOW, ttl) == "abandoned"
    assert select(at(key(), timedelta(hours=23)), None, NOW, ttl) is None


def test_every_version_of_a_deleted_asset_may_go() -> None:
    gone = Live.nothing(COLLECTION, ASSET)
    assert check(original(LIVE_VERSION), Facts(live=gone)) is None
    assert check(thumb(LATER), Facts(live=gone)) is None


@pytest.mark.parametrize(
    "key",
    [
        keys.manifest_key(COLLECTION, ASSET),  # manifests are the API's to delete
        "other/thing.jpg",
        f"originals/{COLLECTION}/loose.jpg",
        f"derivatives/{COLLECTION}/{ASSET}/not-a-version/thumb.jpg",
        f"staging/{UPLOAD}/../../assets/{COLLECTION}/{ASSET}.json",
        f"staging/{COLLECTION}/{UPLOAD}/../{ASSET}",
        f"staging/{COLLECTION}/{UPLOAD}/.other",
        f"staging/{COLLECTION}/{UPLOAD}/a/.claim",
        "staging/not-an-upload-id/x.jpg",
        f"Staging/{UPLOAD}/x.jpg",
        f"/staging/{UPLOAD}/x.jpg",
        "",
    ],
    # UPLOAD is a fresh ULID: ids without it are the same in every worker.
    ids=lambda key: key.replace(UPLOAD, "<upload>"),
)
def test_keys_outside_the_prefixes_or_the_layout_are_refused(key: str) -> None:
    everything_allowed = Facts(live=Live.nothing(COLLECTION, ASSET), leased=False)
    assert check(key, everything_allowed) is Guard.PREFIX


def test_another_bucket_is_refused() -> None:
    assert check(original(EARLIER), Facts(live=LIVE), bucket="someone-elses") is Guard.BUCKET


def test_the_live_keys_and_anything_under_the_live_version_are_refused() -> None:
    listed = manifest()
    for key in listed.live_keys():
        assert check(key, Facts(live=LIVE)) is Guard.LIVE
    unlisted = keys.derivative_key(COLLECTION, ASSET, LIVE_VERSION, "poster", "webp")
    assert check(unlisted, Facts(live=LIVE)) is Guard.LIVE


@pytest.mark.parametrize(
    "live",
    [
        None,  # never read
        Live.unreadable(COLLECTION, ASSET),  # does not parse
        Live.nothing(COLLECTION, "IMG_0002.jpg"),  # another asset's manifest
    ],
)
def test_a_version_without_its_own_readable_manifest_is_refused(live: Live | None) -> None:
    assert check(original(EARLIER), Facts(live=live)) is Guard.UNREADABLE_MANIFEST


@pytest.mark.parametrize("leased", [True, None])
def test_a_leased_or_unknown_upload_is_refused(leased: bool | None) -> None:
    assert check(staged(), Facts(leased=leased)) is Guard.LEASED


@pytest.mark.parametrize(
    ("last_modified", "expected"),
    [
        (NOW - GRACE + timedelta(milliseconds=1), Guard.GRACE),
        (NOW, Guard.GRACE),
        (NOW + timedelta(seconds=30), Guard.GRACE),  # a store clock ahead of ours
        (None, Guard.GRACE),  # an unknown age is never old enough
        (NOW - GRACE, None),
    ],
)
def test_nothing_younger_than_the_grace_period_goes(
    last_modified: datetime | None, expected: Guard | None
) -> None:
    assert check(original(EARLIER), Facts(live=LIVE), last_modified=last_modified) is expected
    assert check(staged(), Facts(leased=False), last_modified=last_modified) is expected


def test_the_cap_is_taken_only_by_keys_every_other_guard_lets_through() -> None:
    budget = Budget(2)
    assert check(original(LIVE_VERSION), Facts(live=LIVE), budget=budget) is Guard.LIVE
    assert check(original(EARLIER), Facts(live=LIVE), budget=budget) is None
    assert check(thumb(EARLIER), Facts(live=LIVE), budget=budget) is None
    assert budget.exhausted
    assert check(staged(), Facts(leased=False), budget=budget) is Guard.CAP


def test_dry_run_refuses_exactly_what_a_real_run_would_delete() -> None:
    budget = Budget(1)
    assert check(original(EARLIER), Facts(live=LIVE), dry_run=True, budget=budget) is (
        Guard.DRY_RUN
    )
    assert check(original(LIVE_VERSION), Facts(live=LIVE), dry_run=True) is Guard.LIVE
    # The dry run spends the cap as a real run would, so its report stops where one would.
    assert check(thumb(EARLIER), Facts(live=LIVE), dry_run=True, budget=budget) is Guard.CAP


def settings(**overrides: Any) -> JanitorSettings:
    values: dict[str, Any] = {
        "nats_url": "nats://127.0.0.1:4222",
        "bucket": BUCKET,
        "gc_grace_seconds": GRACE.total_seconds(),
        "upload_ttl": 86400.0,
        "orphan_age": 3600.0,
        **overrides,
    }
    return JanitorSettings(**values)


def at(key: str, age: timedelta) -> StoredObject:
    return StoredObject(key, 10, NOW - age)


def test_the_sweep_picks_staging_uploads_older_than_the_upload_ttl() -> None:
    ttl = settings()
    assert select(at(staged(), timedelta(hours=25)), None, NOW, ttl) == "abandoned"
    assert select(at(staged(), timedelta(hours=23)), None, NOW, ttl) is None


def test_the_sweep_picks_versions_older_than_the_live_one_after_the_grace_period() -> None:
    grace = settings()
    assert select(at(original(EARLIER), GRACE), LIVE, NOW, grace) == "superseded"
    assert select(at(original(EARLIER), GRACE / 2), LIVE, NOW, grace) is None
    assert select(at(original(LIVE_VERSION), timedelta(days=9)), LIVE, NOW, grace) is None


def test_the_sweep_leaves_a_version_newer_than_the_live_one_until_it_is_an_orphan() -> None:
    # Written by an item still in flight (not yet committed) or by one that failed after.
    ages = settings()
    assert select(at(original(LATER), timedelta(minutes=30)), LIVE, NOW, ages) is None
    assert select(at(original(LATER), timedelta(hours=1)), LIVE, NOW, ages) == "orphaned"


def test_the_sweep_picks_every_version_of_an_asset_without_a_manifest() -> None:
    gone = Live.nothing(COLLECTION, ASSET)
    ages = settings()
    assert select(at(original(EARLIER), timedelta(hours=2)), gone, NOW, ages) == "deleted"
    # A first ingest in flight has no manifest yet either; only time tells them apart.
    assert select(at(original(LATER), timedelta(minutes=10)), gone, NOW, ages) is None


def test_the_sweep_leaves_an_asset_with_an_unreadable_manifest_alone() -> None:
    unreadable = Live.unreadable(COLLECTION, ASSET)
    assert select(at(original(EARLIER), timedelta(days=9)), unreadable, NOW, settings()) is None


def test_a_grace_period_of_zero_lets_even_an_age_the_store_rounded_up_pass() -> None:
    none = Policy(BUCKET, timedelta(0), dry_run=False)
    ahead = StoredObject(original(EARLIER), 10, NOW + timedelta(seconds=1))
    assert may_delete(BUCKET, ahead, Facts(live=LIVE), none, Budget(None), NOW) is None


def test_the_grace_runs_from_the_supersession_not_from_the_keys_write() -> None:
    # Written days ago, superseded a second ago: readers may still hold its URLs.
    just_now = Live.of(manifest(committed_at=NOW - timedelta(seconds=1)))
    written = timedelta(days=3)
    assert check(original(EARLIER), Facts(live=just_now), last_modified=NOW - written) is (
        Guard.GRACE
    )
    assert select(at(original(EARLIER), written), just_now, NOW, settings()) is None
    # The grace has passed since the supersession: now it may go, on both paths.
    then = Live.of(manifest(committed_at=NOW - GRACE))
    assert check(original(EARLIER), Facts(live=then), last_modified=NOW - written) is None
    assert select(at(original(EARLIER), written), then, NOW, settings()) == "superseded"
    # A key written after the supersession (a stale job's) still waits from its write.
    assert check(original(EARLIER), Facts(live=then), last_modified=NOW) is Guard.GRACE


def test_a_staging_upload_waits_only_from_its_own_write() -> None:
    just_now = Live.of(manifest(committed_at=NOW))
    assert check(staged(), Facts(live=just_now, leased=False)) is None


def test_every_version_before_a_tombstone_goes_as_deleted_after_the_grace_from_the_delete() -> None:
    deleted_at = NOW - timedelta(seconds=10)
    tombstone = Live.of(AssetManifest.tombstone(COLLECTION, ASSET, deleted_at))
    assert tombstone.tombstone and tombstone.keys == frozenset()
    written = timedelta(days=3)
    for key in (original(LIVE_VERSION), thumb(EARLIER)):
        assert check(key, Facts(live=tombstone), last_modified=NOW - written) is Guard.GRACE
        assert select(at(key, written), tombstone, NOW, settings()) is None
        later = NOW + GRACE
        assert select(at(key, written), tombstone, later, settings()) == "deleted"


def test_a_tombstone_goes_only_after_it_has_been_kept_long_enough() -> None:
    keep_for = timedelta(days=8)
    tombstone = AssetManifest.tombstone(COLLECTION, ASSET, NOW - keep_for)
    assert tombstone_removable(tombstone, keep_for, NOW)
    assert not tombstone_removable(tombstone, keep_for, NOW - timedelta(milliseconds=1))
    assert not tombstone_removable(manifest(committed_at=NOW - keep_for * 9), keep_for, NOW)


def test_tombstones_are_kept_at_least_a_day_longer_than_the_work_stream_keeps_items() -> None:
    configured = settings(tombstone_keep=3600.0)
    assert configured.tombstones_kept() == timedelta(hours=1)
    assert configured.tombstones_kept(7 * 86400.0) == timedelta(days=8)
    assert settings(tombstone_keep=30 * 86400.0).tombstones_kept(86400.0) == timedelta(days=30)
    assert configured.tombstones_kept(0.0) == timedelta.max  # items kept forever
    assert settings().tombstones_kept() == timedelta(days=8)


def _swept(*listed: tuple[str, str | None]) -> list[str]:
    """The keys the sweep queues, in order, for a listing of (key, reason picked)."""
    claims = Claims()
    queued: list[str] = []
    for key, reason in listed:
        stored = at(key, timedelta(days=2))
        queued += [s.key for s, _ in claims.decide(stored, keys.parse_key(key), reason)]
    queued += [s.key for s, _ in claims.decide(None, None, None)]
    return queued


def test_a_claim_marker_goes_with_its_upload_never_before_it() -> None:
    """Deleted while its upload is still there (a form replayed after the
    promotion wrote it anew), the marker would let the key be ingested again."""
    upload, marker = staged(), claimed()
    # Both old enough: the upload first, then its marker.
    assert _swept((marker, "abandoned"), (upload, "abandoned")) == [upload, marker]
    # The upload beside it is younger than the TTL (a replay): the marker stays too.
    assert _swept((marker, "abandoned"), (upload, None)) == []
    # The marker is younger: the upload goes, the marker stays.
    assert _swept((marker, None), (upload, "abandoned")) == [upload]
    # Alone (its upload promoted and deleted), at the end of the listing or before
    # another upload's keys: by its own age.
    other = keys.staging_key(COLLECTION, keys.new_ulid(), "IMG_0002.jpg")
    assert _swept((marker, "abandoned")) == [marker]
    assert _swept((marker, "abandoned"), (other, None)) == [marker]
    assert _swept((marker, None), (other, "abandoned")) == [other]
    # Keys of other areas pass through untouched.
    assert _swept((original(EARLIER), "superseded")) == [original(EARLIER)]


# -- the fast path and versions newer than the live one --------------------------------


def test_a_version_newer_than_the_live_one_goes_only_once_it_is_an_orphan() -> None:
    # An item still being made writes its keys before its commit: a GC request for them
    # (forged, or mistaken) must not take them from under it.
    for key in (original(LATER), thumb(LATER)):
        young = NOW - ORPHAN_AGE + timedelta(seconds=1)
        assert check(key, Facts(live=LIVE), last_modified=young) is Guard.NEWER_THAN_LIVE
        assert check(key, Facts(live=LIVE), last_modified=NOW - ORPHAN_AGE) is None


@pytest.mark.parametrize(
    "live",
    [
        Live.nothing(COLLECTION, ASSET),  # a first ingest in flight: no manifest yet
        Live.of(AssetManifest.tombstone(COLLECTION, ASSET, NOW - timedelta(hours=3))),
    ],
    ids=["no-manifest", "after-a-tombstone"],
)
def test_a_version_after_a_delete_or_before_any_commit_is_protected_while_young(
    live: Live,
) -> None:
    young = NOW - timedelta(minutes=10)
    assert check(original(LATER), Facts(live=live), last_modified=young) is Guard.NEWER_THAN_LIVE


def test_a_newer_version_of_unknown_age_or_without_an_age_rule_is_never_deleted() -> None:
    assert check(original(LATER), Facts(live=LIVE), last_modified=None) in (
        Guard.NEWER_THAN_LIVE,
        Guard.GRACE,
    )
    no_rule = Policy(BUCKET, GRACE, dry_run=False)
    ancient = StoredObject(original(LATER), 10, NOW - timedelta(days=365))
    assert may_delete(BUCKET, ancient, Facts(live=LIVE), no_rule, Budget(None), NOW) is (
        Guard.NEWER_THAN_LIVE
    )
    assert Guard.NEWER_THAN_LIVE.passes_with_time


MINUTE_MS = 60_000
NOW_MS = int(NOW.timestamp() * 1000)


@given(
    live_offset=st.integers(-600, 600),
    key_offset=st.integers(-600, 600),
    index=st.integers(0, 3),
    age_minutes=st.integers(0, 180),
    superseded_minutes=st.integers(0, 180),
    state=st.sampled_from(["live", "tombstone", "nothing"]),
)
def test_the_guards_delete_a_version_only_where_the_sweep_s_rules_would(
    live_offset: int,
    key_offset: int,
    index: int,
    age_minutes: int,
    superseded_minutes: int,
    state: str,
) -> None:
    """Over every ordering of a key's version against the live one (before, equal, after;
    live, deleted, or never committed): whatever a GC request names, the guards let it go
    only when the sweep would pick it by its own rules, so the fast path can never delete
    a version the sweep's age rule still protects."""
    live_ulid = keys.new_ulid(millis=NOW_MS + live_offset * MINUTE_MS)
    live_version = keys.version_id(live_ulid, 0)
    key_version = keys.version_id(keys.new_ulid(millis=NOW_MS + key_offset * MINUTE_MS), index)
    superseded = NOW - timedelta(minutes=superseded_minutes)
    if state == "live":
        live = Live.of(manifest(live_version, committed_at=superseded))
    elif state == "tombstone":
        tombstone = AssetManifest.tombstone(COLLECTION, ASSET, superseded, live_ulid)
        live = Live.of(tombstone)
    else:
        live = Live.nothing(COLLECTION, ASSET)
    stored = at(original(key_version), timedelta(minutes=age_minutes))
    guard = may_delete(
        BUCKET,
        stored,
        Facts(live=live),
        Policy(BUCKET, GRACE, False, ORPHAN_AGE),
        Budget(None),
        NOW,
    )
    swept = select(stored, live, NOW, settings(orphan_age=ORPHAN_AGE.total_seconds()))
    if guard is None:
        assert swept is not None
    if live.version is None or key_version > live.version:
        # Not yet live (or never to be): refused while younger than the age rule.
        old_enough = timedelta(minutes=age_minutes) >= ORPHAN_AGE
        assert (guard is Guard.NEWER_THAN_LIVE) == (not old_enough)


def test_an_orphan_age_of_zero_lets_even_an_age_the_store_rounded_up_pass() -> None:
    zero = Policy(BUCKET, timedelta(0), dry_run=False, orphan_age=timedelta(0))
    ahead = StoredObject(original(LATER), 10, NOW + timedelta(seconds=1))
    assert may_delete(BUCKET, ahead, Facts(live=LIVE), zero, Budget(None), NOW) is None


# The capture-order index: an entry names one version of one asset and is judged like it.
TAKEN_AT = datetime(2026, 7, 1, 9, 30, tzinfo=UTC)


def indexed(version: str, taken_at: datetime | None = TAKEN_AT, asset: str = ASSET) -> str:
    return keys.taken_key(COLLECTION, asset, version, taken_at)


def test_the_live_versions_index_entry_is_never_deleted_whatever_its_time() -> None:
    live = Live.of(manifest())
    assert live.protects(manifest().taken_key() or "")
    # However the time was read when it was written, the live version's entry is live.
    for taken_at in (TAKEN_AT, None, NOW):
        assert check(indexed(LIVE_VERSION, taken_at), Facts(live=live)) is Guard.LIVE
        assert (
            select(at(indexed(LIVE_VERSION, taken_at), timedelta(days=9)), live, NOW, settings())
            is None
        )
    # Another asset's entry at the same version is not this one's.
    other = indexed(LIVE_VERSION, asset="IMG_0002.jpg")
    assert check(other, Facts(live=live)) is Guard.UNREADABLE_MANIFEST


def test_a_superseded_or_deleted_versions_index_entry_goes_after_the_grace() -> None:
    assert check(indexed(EARLIER), Facts(live=LIVE)) is None
    assert select(at(indexed(EARLIER), timedelta(days=1)), LIVE, NOW, settings()) == "superseded"
    deleted = Live.of(
        AssetManifest.tombstone(
            COLLECTION, ASSET, NOW - timedelta(hours=1), keys.new_ulid(NOW.timestamp() - 30)
        )
    )
    assert check(indexed(EARLIER), Facts(live=deleted)) is None
    assert (
        select(at(indexed(LIVE_VERSION), timedelta(days=1)), deleted, NOW, settings()) == "deleted"
    )
    # Superseded a moment ago: readers may still be paging past it.
    just_now = Live.of(manifest(committed_at=NOW - GRACE / 2))
    assert check(indexed(EARLIER), Facts(live=just_now)) is Guard.GRACE


def test_an_index_entry_newer_than_the_live_version_waits_until_it_is_an_orphan() -> None:
    # Written before its commit: the item may still be in flight.
    young = NOW - timedelta(minutes=10)
    assert check(indexed(LATER), Facts(live=LIVE), last_modified=young) is Guard.NEWER_THAN_LIVE
    assert select(at(indexed(LATER), timedelta(minutes=10)), LIVE, NOW, settings()) is None
    assert select(at(indexed(LATER), timedelta(hours=1)), LIVE, NOW, settings()) == "orphaned"


def test_an_index_entry_without_its_own_readable_manifest_is_refused() -> None:
    assert check(indexed(EARLIER), Facts()) is Guard.UNREADABLE_MANIFEST
    unreadable = Live.unreadable(COLLECTION, keys.asset_segment(ASSET))
    assert check(indexed(EARLIER), Facts(live=unreadable)) is Guard.UNREADABLE_MANIFEST
