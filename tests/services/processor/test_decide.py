"""`store.decide` against live manifests and tombstones, over orderings of versions (pure logic)."""

from __future__ import annotations

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from emulsion_contracts import keys
from emulsion_contracts.manifest import AssetManifest
from emulsion_processor import store
from tests.contracts.test_manifest import live

NOW = datetime(2026, 1, 1, tzinfo=UTC)
# Versions of one asset: job ULIDs at some millisecond, then an item index.
versions = st.builds(
    lambda millis, index: keys.version_id(keys.new_ulid(millis / 1000), index),
    st.integers(1_600_000_000_000, 1_900_000_000_000),
    st.integers(0, 99_999),
)


def tombstone(version: str) -> AssetManifest:
    return AssetManifest.tombstone("gallery", "a.jpg", NOW).model_copy(update={"version": version})


@given(current=versions, incoming=versions)
def test_a_live_manifest_is_replaced_only_by_a_later_version(current: str, incoming: str) -> None:
    decided = store.decide(store.Current(live(current), "etag"), incoming)
    if incoming > current:
        assert decided is None
    elif incoming == current:
        assert decided is store.Outcome.ALREADY
    else:
        assert decided is store.Outcome.STALE


@given(deleting=versions, incoming=versions)
def test_a_tombstone_stops_every_earlier_version_and_yields_to_a_later_one(
    deleting: str, incoming: str
) -> None:
    decided = store.decide(store.Current(tombstone(deleting), "etag"), incoming)
    assert decided is (None if incoming > deleting else store.Outcome.STALE)


def test_no_manifest_or_an_unreadable_one_is_written() -> None:
    version = keys.version_id(keys.new_ulid(), 0)
    assert store.decide(None, version) is None
    assert store.decide(store.Current(None, "etag"), version) is None


def test_the_deleting_version_itself_never_counts_as_already_committed() -> None:
    version = keys.version_id(keys.new_ulid(), 0)
    assert store.decide(store.Current(tombstone(version), "etag"), version) is store.Outcome.STALE
