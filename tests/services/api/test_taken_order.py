"""Capture-order pages (`order=taken_at`) from the index under `taken/`, as a property over
random collections: whatever the uploads (capture times with ties, none, offsets),
re-uploads that change the time, re-renders, deletes, stale and in-flight items, and
whichever superseded entries the janitor has collected yet, paging through with any page
size returns each live asset exactly once, in capture order (UTC; untimed last; ties by
the asset's key)."""

from __future__ import annotations

import asyncio
import base64
import bisect
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulsion_api import listing
from emulsion_api.errors import ApiError
from emulsion_api.store import IndexEntry, StoredManifest
from emulsion_contracts import keys
from emulsion_contracts.manifest import AssetManifest, PhotoMetadata
from tests.manifests import original_only

COLLECTION = "holiday-2026"
BASE = datetime(2026, 5, 4, 13, 14, 15)
ZONES = (None, UTC, timezone(timedelta(hours=9)), timezone(-timedelta(hours=3, minutes=30)))
ASSETS = ("IMG_0001.jpg", "IMG_0002.jpg", "写真.JPG", "café.jpg", "a", "Z.png", "x" * 200)

# Few distinct wall-clock times and several zones: ties, and equal instants written in
# different offsets (13:14 at +09:00 is 04:14 UTC), come up often.
capture_times = st.one_of(
    st.none(),
    st.builds(
        lambda hours, zone: (BASE + timedelta(hours=hours)).replace(tzinfo=zone),
        st.sampled_from([-9, 0, 0, 3, 9, 12]),
        st.sampled_from(ZONES),
    ),
)

# An operation on the collection; each runs in order.
operations = st.lists(
    st.one_of(
        st.tuples(st.just("upload"), st.sampled_from(ASSETS), capture_times),
        st.tuples(st.just("rerender"), st.sampled_from(ASSETS), st.none()),
        st.tuples(st.just("delete"), st.sampled_from(ASSETS), st.none()),
        # An item older than the live version that wrote its entry and lost its commit.
        st.tuples(st.just("stale"), st.sampled_from(ASSETS), capture_times),
        # An item in flight (or failed after writing): its entry, no commit.
        st.tuples(st.just("in_flight"), st.sampled_from(ASSETS), capture_times),
    ),
    max_size=30,
)


@dataclass
class Bucket:
    """The part of the store the listing sees: index keys and manifests."""

    index: list[str] = field(default_factory=list)  # sorted, as S3 lists
    manifests: dict[str, AssetManifest] = field(default_factory=dict)
    clock: int = 0
    # The most keys one listing call answers (S3 may answer fewer than MaxKeys).
    cap: int = 1000

    def version(self) -> str:
        self.clock += 1
        return keys.version_id(keys.new_ulid(millis=1_700_000_000_000 + self.clock * 10), 0)

    def put_index(self, key: str) -> None:
        if key not in self.index:
            bisect.insort(self.index, key)

    def collect(self, key: str | None) -> None:
        if key is not None and key in self.index:
            self.index.remove(key)

    def live(self, asset: str) -> AssetManifest | None:
        return self.manifests.get(keys.manifest_key(COLLECTION, asset))

    async def list_from(self, after: str | None, most: int) -> tuple[list[IndexEntry], bool]:
        start = bisect.bisect_right(self.index, after) if after is not None else 0
        most = min(most, self.cap)
        chosen = self.index[start : start + most]
        entries = []
        for key in chosen:
            parsed = keys.parse_key(key)
            assert parsed is not None and parsed.segment and parsed.version
            entries.append(
                IndexEntry(
                    key,
                    parsed.segment,
                    parsed.version,
                    keys.segment_manifest_key(COLLECTION, parsed.segment),
                )
            )
        return entries, start + most < len(self.index)

    async def read(self, entry: IndexEntry) -> StoredManifest | None:
        manifest = self.manifests.get(entry.manifest_key)
        if manifest is None or manifest.is_tombstone:
            return None  # the API's read leaves tombstones out
        return StoredManifest(manifest, f'"{manifest.version}"')


def manifest(asset: str, version: str, taken_at: datetime | None) -> AssetManifest:
    return original_only(
        COLLECTION,
        asset,
        version,
        datetime(2026, 12, 7, tzinfo=UTC),
        PhotoMetadata(taken_at=taken_at) if taken_at is not None else None,
    )


def apply(
    bucket: Bucket, ops: list[tuple[str, str, datetime | None]], collected: list[bool]
) -> None:
    """What the processor, the API and the janitor do, op by op; `collected[i]` says
    whether the janitor has already removed what op i superseded."""
    for number, (kind, asset, taken_at) in enumerate(ops):
        gone = collected[number % len(collected)] if collected else False
        current = bucket.live(asset)
        key = keys.manifest_key(COLLECTION, asset)
        if kind in ("upload", "rerender"):
            if kind == "rerender":
                if current is None or current.is_tombstone:
                    continue
                taken_at = current.metadata.taken_at if current.metadata else None
            new = manifest(asset, bucket.version(), taken_at)
            # The processor: the entry before the commit, then the superseded one to GC.
            bucket.put_index(new.taken_key() or "")
            bucket.manifests[key] = new
            if gone and current is not None:
                bucket.collect(current.taken_key())
        elif kind == "delete":
            if current is None or current.is_tombstone:
                continue
            bucket.manifests[key] = AssetManifest.tombstone(
                COLLECTION,
                asset,
                datetime(2026, 12, 7, tzinfo=UTC),
                keys.new_ulid(millis=1_700_000_000_000 + (bucket.clock + 1) * 10),
            )
            bucket.clock += 1
            if gone:
                bucket.collect(current.taken_key())
        elif kind == "stale":
            if current is None:
                continue
            # A version minted before every one the bucket committed.
            older = keys.version_id(keys.new_ulid(millis=1_600_000_000_000 + number), 0)
            bucket.put_index(keys.taken_key(COLLECTION, asset, older, taken_at))
        else:  # in flight: minted now, never committed
            bucket.put_index(keys.taken_key(COLLECTION, asset, bucket.version(), taken_at))


def capture_order(bucket: Bucket) -> list[str]:
    def utc(taken_at: datetime) -> datetime:
        if taken_at.tzinfo is None:
            return taken_at
        return taken_at.astimezone(UTC).replace(tzinfo=None)

    live = [m for m in bucket.manifests.values() if not m.is_tombstone]
    dated = [m for m in live if m.metadata is not None and m.metadata.taken_at is not None]
    undated = [m for m in live if m not in dated]
    segment = keys.asset_segment
    return [
        *(
            m.asset
            for m in sorted(
                dated,
                key=lambda m: (utc(m.metadata.taken_at), segment(m.asset)),  # type: ignore[union-attr,arg-type]
            )
        ),
        *(m.asset for m in sorted(undated, key=lambda m: segment(m.asset))),
    ]


def walk(bucket: Bucket, limit: int, scan_max: int) -> tuple[list[str], int]:
    """Every page in turn, as a client follows `next_cursor`: the assets shown, and how
    many manifest reads it took."""
    reads = 0

    async def read(entry: IndexEntry) -> StoredManifest | None:
        nonlocal reads
        reads += 1
        return await bucket.read(entry)

    async def pages() -> list[str]:
        shown: list[str] = []
        after: str | None = None
        for _ in range(10_000):
            page = await listing.taken_page(bucket.list_from, read, limit, after, scan_max)
            assert len(page.entries) <= limit
            shown += [stored.manifest.asset for _, stored in page.entries]
            if page.next_key is None:
                return shown
            # Through the cursor, as the client hands it back.
            cursor = listing.encode_taken_cursor(COLLECTION, page.next_key)
            after = listing.decode_taken_cursor(cursor, COLLECTION)
        raise AssertionError("the pages never end")

    return asyncio.run(pages()), reads


@settings(max_examples=300, deadline=None)
@given(
    operations,
    st.lists(st.booleans(), min_size=1, max_size=8),
    st.integers(1, 6),
    st.integers(1, 40),
    st.integers(1, 8),
)
def test_paging_in_capture_order_returns_each_live_asset_once_in_order(
    ops: list[tuple[str, str, datetime | None]],
    collected: list[bool],
    limit: int,
    scan_max: int,
    cap: int,
) -> None:
    bucket = Bucket(cap=cap)
    apply(bucket, ops, collected)
    shown, reads = walk(bucket, limit, scan_max)
    assert shown == capture_order(bucket)
    # Each index entry's manifest is read at most once over the whole walk.
    assert reads <= len(bucket.index)


@given(operations.filter(lambda ops: all(kind == "upload" for kind, _, _ in ops)))
def test_a_page_without_stale_entries_reads_only_what_it_shows(
    ops: list[tuple[str, str, datetime | None]],
) -> None:
    bucket = Bucket()
    # Only first uploads of distinct assets: no entry is stale.
    firsts = {asset: (kind, asset, when) for kind, asset, when in ops}
    apply(bucket, list(firsts.values()), [True])
    shown, reads = walk(bucket, 3, listing.TAKEN_SCAN_MAX)
    assert reads == len(shown) == len(firsts)


def test_capture_times_compare_in_utc_and_untimed_come_last() -> None:
    bucket = Bucket()
    tokyo = timezone(timedelta(hours=9))
    apply(
        bucket,
        [
            ("upload", "late.jpg", datetime(2026, 5, 4, 12, 0, tzinfo=UTC)),
            ("upload", "early-in-tokyo.jpg", datetime(2026, 5, 4, 20, 0, tzinfo=tokyo)),
            ("upload", "no-exif.png", None),
            ("upload", "naive.jpg", datetime(2026, 5, 4, 11, 0)),
        ],
        [True],
    )
    # 20:00 in Tokyo is 11:00 UTC: a tie with the naive 11:00, broken by the asset's key.
    assert walk(bucket, 2, 100)[0] == ["early-in-tokyo.jpg", "naive.jpg", "late.jpg", "no-exif.png"]


def test_a_re_upload_moves_the_asset_to_its_new_time_even_before_the_janitor_runs() -> None:
    bucket = Bucket()
    apply(
        bucket,
        [
            ("upload", "a.jpg", datetime(2026, 1, 1)),
            ("upload", "b.jpg", datetime(2026, 2, 1)),
            ("upload", "a.jpg", datetime(2026, 3, 1)),
        ],
        [False],
    )
    assert len(bucket.index) == 3  # the superseded entry is still there
    assert walk(bucket, 1, 100)[0] == ["b.jpg", "a.jpg"]


@pytest.mark.parametrize(
    "fields",
    [
        {"c": "other", "o": "taken_at", "k": "taken/other/~/a/x"},
        {"c": COLLECTION, "o": "written", "k": f"taken/{COLLECTION}/~/a/x"},
        {"c": COLLECTION, "o": "taken_at", "k": "assets/holiday-2026/a.json"},
        {"c": COLLECTION, "o": "taken_at", "k": 7},
        {"c": COLLECTION, "s": "live", "t": "2026-01-01T00:00:00+00:00", "k": "x"},
    ],
)
def test_a_cursor_of_another_list_collection_or_place_is_refused(fields: dict[str, object]) -> None:
    cursor = base64.urlsafe_b64encode(json.dumps(fields).encode()).decode().rstrip("=")
    with pytest.raises(ApiError) as refused:
        listing.decode_taken_cursor(cursor, COLLECTION)
    assert refused.value.status == 422
    # And a taken_at cursor is no cursor of the newest-first list.
    taken = listing.encode_taken_cursor(COLLECTION, f"taken/{COLLECTION}/~/a/x")
    with pytest.raises(ApiError):
        listing.decode_cursor(taken, COLLECTION, "live")
