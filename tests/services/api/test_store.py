"""The manifest delete on the real MinIO: only the version that was read becomes a tombstone."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from emulsion_api.settings import ApiSettings
from emulsion_api.store import Store
from emulsion_contracts import keys
from emulsion_devstack.stack import Endpoints
from emulsion_runtime.blocking import Blocking

from .conftest import commit_manifest, live_collection, new_collection


@contextmanager
def store_over(s3: Any, stack: Endpoints, **listing: int) -> Iterator[Store]:
    settings = ApiSettings.model_validate(
        {"NATS_URL": stack.nats_url, "EMULSION_BUCKET": stack.bucket, "EMULSION_API_TOKENS": "t"}
    )
    blocking = Blocking(4, "test-io")
    try:
        yield Store(s3, settings, blocking, **listing)
    finally:
        blocking.close()


@pytest.fixture
def store(s3: Any, stack: Endpoints) -> Iterator[Store]:
    with store_over(s3, stack) as store:
        yield store


def test_minio_ignores_if_match_on_delete(s3: Any, stack: Endpoints) -> None:
    # Why deletes write a tombstone with If-Match (enforced on PUT) rather than DELETE, and
    # why the janitor checks a tombstone's ETag itself right before removing it.
    key = f"assets/{new_collection()}/probe.json"
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"1")
    stale = s3.head_object(Bucket=stack.bucket, Key=key)["ETag"]
    s3.put_object(Bucket=stack.bucket, Key=key, Body=b"2")

    s3.delete_object(Bucket=stack.bucket, Key=key, IfMatch=stale)

    assert s3.list_objects_v2(Bucket=stack.bucket, Prefix=key)["KeyCount"] == 0


def test_a_manifest_changed_since_it_was_read_is_not_deleted(
    store: Store, s3: Any, stack: Endpoints, run: Any
) -> None:
    collection = live_collection(s3, stack.bucket, "a.jpg")
    read = run(store.read_manifest(collection, "a.jpg"))
    newer = commit_manifest(
        s3, stack.bucket, collection, "a.jpg", keys.version_id(keys.new_ulid(), 1)
    )

    assert run(store.delete_manifest(read, keys.new_ulid())) is False

    current = run(store.read_manifest(collection, "a.jpg"))
    assert current is not None and current.manifest.version == newer.version
    assert run(store.delete_manifest(current, keys.new_ulid())) is True
    assert run(store.read_manifest(collection, "a.jpg")) is None
    assert run(store.delete_manifest(current, keys.new_ulid())) is False


class CountingHeads:
    """The S3 client, counting the HEAD requests made through it."""

    def __init__(self, s3: Any) -> None:
        self.s3 = s3
        self.heads = 0

    def __getattr__(self, name: str) -> Any:
        if name == "head_object":
            self.heads += 1
        return getattr(self.s3, name)


def test_many_uploads_are_found_by_listing_their_key_range(
    stage: Any, s3: Any, stack: Endpoints, run: Any
) -> None:
    staged = stage(30, new_collection())
    counting = CountingHeads(s3)
    with store_over(counting, stack) as store:
        assert run(store.missing(staged)) == []
        s3.delete_object(Bucket=stack.bucket, Key=staged[7])
        assert run(store.missing(staged)) == [staged[7]]
    assert counting.heads == 0  # one listing of the range, not a HEAD per upload


def test_many_uploads_in_a_crowded_range_are_left_to_the_processor_not_headed(
    s3: Any, stack: Endpoints, run: Any
) -> None:
    # Ours and another client's uploads to one collection presigned at the same time
    # interleave in key order.
    collection = new_collection()
    ours: list[str] = []
    for number in range(30):
        for owner in ("ours", "theirs"):
            key = keys.staging_key(collection, keys.new_ulid(), f"{owner}-{number}.jpg")
            s3.put_object(Bucket=stack.bucket, Key=key, Body=b"x")
            if owner == "ours":
                ours.append(key)
    s3.delete_object(Bucket=stack.bucket, Key=ours[7])
    counting = CountingHeads(s3)
    # Two pages of five keys cannot cover the sixty keys of the range.
    with store_over(counting, stack, list_pages=2, page_keys=5) as store:
        assert run(store.missing(ours)) == []
    assert counting.heads == 0
    # With room to list the whole range, the missing upload is found without a HEAD.
    with store_over(counting, stack, list_pages=20, page_keys=5) as store:
        assert run(store.missing(ours)) == [ours[7]]
    assert counting.heads == 0


LONG_NAME = "日本の美しい風景写真コレクション二千二十六年十二月七日撮影分その一.jpg"


class LongSegmentsStore:
    """Wraps the S3 client as a store that takes segments MinIO refuses (S3 does): a
    key holding `segment` is kept under a short stand-in."""

    def __init__(self, s3: Any, segment: str) -> None:
        self._s3 = s3
        self._segment = segment

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._s3, name)

        def call(**arguments: Any) -> Any:
            if "Key" in arguments:
                arguments["Key"] = arguments["Key"].replace(self._segment, "stand-in")
            return real(**arguments)

        return call


def test_an_assets_manifest_from_before_the_segment_limit_is_still_read(
    s3: Any, stack: Endpoints, run: Any
) -> None:
    collection = new_collection()
    legacy = keys.encoded_name(LONG_NAME)
    assert legacy != keys.asset_segment(LONG_NAME) and len(legacy) > 255
    on_s3 = LongSegmentsStore(s3, legacy)
    version = keys.version_id(keys.new_ulid(), 0)
    written = commit_manifest(on_s3, stack.bucket, collection, LONG_NAME, version)
    # As an old processor wrote it: under the whole encoding, not the shortened segment.
    on_s3.copy_object(
        Bucket=stack.bucket,
        Key=keys.segment_manifest_key(collection, legacy),
        CopySource={"Bucket": stack.bucket, "Key": keys.manifest_key(collection, LONG_NAME)},
    )
    on_s3.delete_object(Bucket=stack.bucket, Key=keys.manifest_key(collection, LONG_NAME))
    with store_over(on_s3, stack) as store:
        found = run(store.read_manifest(collection, LONG_NAME))
    assert found is not None and found.manifest == written


def test_a_long_name_without_a_manifest_is_none_on_minio_not_an_outage(
    store: Store, run: Any
) -> None:
    # The legacy read names a 301-byte segment, which MinIO refuses: nothing is there.
    assert run(store.read_manifest(new_collection(), LONG_NAME)) is None
