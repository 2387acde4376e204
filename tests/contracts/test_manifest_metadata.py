"""A manifest's photo metadata, uploaded name, checksum and placeholder: recorded beside
the rest, bounded, and optional, so manifests written before them read as they did."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from emulsion_contracts import keys
from emulsion_contracts.manifest import (
    TEXT_MAX,
    AssetManifest,
    Gps,
    Original,
    PhotoMetadata,
    Placeholder,
)
from tests.contracts.test_manifest import NOW, live

METADATA = PhotoMetadata(
    taken_at=datetime(2026, 5, 4, 13, 14, 15, tzinfo=timezone(timedelta(hours=9))),
    camera_make="Canon",
    camera_model="Canon EOS R5",
    lens="RF50mm F1.8 STM",
    iso=400,
    exposure_time=0.004,
    aperture=2.8,
    focal_length=50.0,
    artist="写真家 Zoë",
    copyright="© 2026",
    orientation=6,
    gps=Gps(latitude=35.6751389, longitude=139.75, altitude=40.5),
)
PLACEHOLDER = Placeholder(thumbhash="1QcSHQRnh493V4dIh4eXh1h4kJUI", dominant_color="#c8a078")


def described() -> AssetManifest:
    manifest = live(keys.version_id(keys.new_ulid(), 0))
    original = manifest.original.model_copy(
        update={"uploaded_name": "写真.JPG", "sha256": "ab" * 32}
    )
    return manifest.model_copy(
        update={"original_or_none": original, "metadata": METADATA, "placeholder": PLACEHOLDER}
    )


def test_metadata_and_placeholder_round_trip_with_the_capture_offset_and_unicode() -> None:
    manifest = described()
    data = json.loads(manifest.to_bytes())
    assert data["metadata"]["taken_at"] == "2026-05-04T13:14:15+09:00"
    assert data["metadata"]["artist"] == "写真家 Zoë"
    assert data["original"]["uploaded_name"] == "写真.JPG"
    assert data["original"]["filename"] == "a.jpg"  # the safe name inside the key
    assert AssetManifest.from_bytes(manifest.to_bytes()) == manifest


def test_a_naive_capture_time_stays_naive() -> None:
    naive = PhotoMetadata(taken_at=datetime(2026, 5, 4, 13, 14, 15))
    assert PhotoMetadata.model_validate_json(naive.model_dump_json()).taken_at == datetime(
        2026, 5, 4, 13, 14, 15
    )


def test_a_manifest_written_before_the_fields_reads_with_them_absent() -> None:
    old = json.loads(live(keys.version_id(keys.new_ulid(), 0)).to_bytes())
    for name in ("metadata", "placeholder"):
        del old[name]
    for name in ("uploaded_name", "sha256"):
        del old["original"][name]
    read = AssetManifest.from_bytes(json.dumps(old).encode())
    assert read.metadata is None and read.placeholder is None
    assert read.original.uploaded_name is None and read.original.sha256 is None
    assert read.live_keys() == live(read.version).live_keys()


def test_unknown_fields_of_a_later_writer_are_ignored() -> None:
    data = json.loads(described().to_bytes())
    data["metadata"]["shutter_count"] = 12345
    data["placeholder"]["blurhash"] = "LEHV6nWB2yk8pyo0adR*.7kCMdnj"
    assert AssetManifest.from_bytes(json.dumps(data).encode()).metadata == METADATA


def test_an_empty_metadata_says_so() -> None:
    assert PhotoMetadata().empty
    assert not PhotoMetadata(iso=100).empty


@pytest.mark.parametrize(
    "bad",
    [
        {"artist": "x" * (TEXT_MAX + 1)},
        {"iso": -1},
        {"aperture": 0},
        {"orientation": 9},
        {"gps": {"latitude": 91, "longitude": 0}},
    ],
)
def test_metadata_is_bounded(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PhotoMetadata.model_validate(bad)


@pytest.mark.parametrize(
    "bad", [{"dominant_color": "red"}, {"thumbhash": "x" * 65}, {"dominant_color": "#C8A078"}]
)
def test_a_placeholder_is_bounded(bad: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Placeholder.model_validate({**PLACEHOLDER.model_dump(), **bad})


def test_the_checksum_is_sha256_hex() -> None:
    with pytest.raises(ValidationError):
        Original(
            key="k", filename="a.jpg", content_type="image/jpeg", bytes=1, width=1, height=1,
            sha256="not-a-digest",
        )  # fmt: skip


def test_a_tombstone_records_no_metadata() -> None:
    tombstone = AssetManifest.tombstone("gallery", "a.jpg", NOW)
    assert tombstone.metadata is None
    data = {**json.loads(tombstone.to_bytes()), "metadata": METADATA.model_dump(mode="json")}
    with pytest.raises(ValidationError, match="metadata"):
        AssetManifest.model_validate(data)
