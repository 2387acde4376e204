"""The manifest's lifecycle: live versions and the tombstone a delete leaves (contract 2)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from emulsion_contracts import keys
from emulsion_contracts.manifest import AssetManifest, Original
from emulsion_contracts.messages import Derivative, JobRef

NOW = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def live(version: str, committed_at: datetime = NOW) -> AssetManifest:
    original = keys.original_key("gallery", "a.jpg", version, "a.jpg")
    thumb = keys.derivative_key("gallery", "a.jpg", version, "thumb", "jpg")
    return AssetManifest(
        collection="gallery",
        asset="a.jpg",
        version=version,
        job=JobRef(namespace="default", name="job", uid="uid"),
        index=0,
        original=Original(
            key=original, filename="a.jpg", content_type="image/jpeg", bytes=1, width=1, height=1
        ),
        derivatives=(
            Derivative(
                style="thumb", key=thumb, width=1, height=1, bytes=1, content_type="image/jpeg"
            ),
        ),
        committed_at=committed_at,
    )


def test_a_live_manifest_lists_its_keys_and_round_trips_as_before() -> None:
    manifest = live(keys.version_id(keys.new_ulid(), 0))
    data = json.loads(manifest.to_bytes())
    assert data["original"]["key"] == manifest.original.key
    assert (data["job"]["name"], data["index"], data["deleted_at"]) == ("job", 0, None)
    assert AssetManifest.from_bytes(manifest.to_bytes()) == manifest
    assert not manifest.is_tombstone
    assert len(manifest.live_keys()) == 2
    assert manifest.superseded_at == manifest.committed_at


def test_a_manifest_written_before_tombstones_existed_still_reads() -> None:
    manifest = live(keys.version_id(keys.new_ulid(), 0))
    data = json.loads(manifest.to_bytes())
    del data["deleted_at"]
    assert AssetManifest.from_bytes(json.dumps(data).encode()) == manifest


def test_a_tombstone_has_no_live_keys_and_a_later_version_than_what_it_deleted() -> None:
    deleted = live(keys.version_id(keys.new_ulid(NOW.timestamp()), 7))
    tombstone = AssetManifest.tombstone("gallery", "a.jpg", NOW + timedelta(seconds=5))

    assert tombstone.is_tombstone
    assert tombstone.live_keys() == frozenset()
    assert tombstone.supersedes(deleted)
    assert tombstone.deleted_at == tombstone.committed_at == tombstone.superseded_at
    data = json.loads(tombstone.to_bytes())
    assert (data["original"], data["derivatives"], data["job"], data["index"]) == (
        None,
        [],
        None,
        None,
    )
    assert AssetManifest.from_bytes(tombstone.to_bytes()) == tombstone
    with pytest.raises(ValueError, match="tombstone"):
        _ = tombstone.original


def test_a_tombstone_must_be_empty() -> None:
    version = keys.version_id(keys.new_ulid(), 0)
    data = json.loads(live(version).to_bytes())
    data["deleted_at"] = NOW.isoformat()
    with pytest.raises(ValueError, match="tombstone"):
        AssetManifest.from_bytes(json.dumps(data).encode())
    with pytest.raises(ValueError, match="original"):
        AssetManifest.from_bytes(
            json.dumps({**data, "deleted_at": None, "original": None}).encode()
        )
