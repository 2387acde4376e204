"""HEIC through a processor on the real stack: a photo is processed on its first
delivery with its type recorded; a damaged one fails on its first delivery with a clear
reason, and is not given back for another try (it would fail the same way again)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image

from emulsion_contracts import keys
from emulsion_contracts.manifest import AssetManifest
from emulsion_contracts.messages import ItemResult, StyleSpec
from emulsion_contracts.profiles import DEFAULT_PROFILE, OriginalPolicy, Profile
from emulsion_devstack.stack import Endpoints
from emulsion_processor.delivery import Delivery
from tests import phone_photos as photos

from .conftest import Bus, in_process_worker, stage, work_item


def test_a_heic_is_processed_and_a_damaged_one_fails_at_once_for_good(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    seen = photos.marked(900, 1200)
    good = photos.heic(photos.stored_for(seen, 6), orientation=6, tile_size=512)
    damaged = good[:40] + b"\xa5" * 400
    items = [
        work_item(stage(s3, stack.bucket, good, "IMG_0001.HEIC"), asset="IMG_0001.HEIC"),
        work_item(stage(s3, stack.bucket, damaged, "IMG_0002.HEIC"), asset="IMG_0002.HEIC"),
    ]

    async def body(bus: Bus) -> list[Any]:
        with in_process_worker(stack, s3, bus, tmp_path / "scratch") as worker:
            return [await Delivery(worker).result_or_give_back(item, 1) for item in items]

    processed, failed = with_bus(body)
    assert isinstance(processed, ItemResult) and isinstance(failed, ItemResult)
    assert (processed.outcome, processed.attempts) == ("succeeded", 1)
    assert (failed.outcome, failed.reason, failed.attempts) == ("failed", "CorruptImage", 1)
    assert failed.message and failed.message.startswith("the HEIC/HEIF file cannot be read (")
    stored = s3.get_object(
        Bucket=stack.bucket, Key=keys.manifest_key(items[0].collection, items[0].asset)
    )["Body"].read()
    manifest = AssetManifest.model_validate_json(stored)
    assert manifest.original.content_type == "image/heic"
    assert (manifest.original.width, manifest.original.height) == (900, 1200)
    large = next(d for d in manifest.derivatives if d.style == "large")
    assert (large.width, large.height) == (600, 800)


PUBLIC = Profile(
    name="public",
    styles=(StyleSpec(name="thumb", width=100, height=100, fit="crop"),),
    original=OriginalPolicy(strip=("gps", "xmp")),
)


def test_a_stripping_profile_stores_an_iphone_heic_without_gps(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Apple"
    exif.get_ifd(0x8825).update({1: "N", 2: (51.0, 30.0, 26.0), 3: "W", 4: (0.0, 7.0, 39.0)})
    buffer = io.BytesIO()
    photos.marked(640, 480).save(
        buffer, "HEIF", exif=exif.tobytes(), xmp=b"<x:xmpmeta>GPS</x:xmpmeta>", tile_size=256
    )
    upload = buffer.getvalue()
    item = work_item(stage(s3, stack.bucket, upload, "IMG_0003.HEIC"), profile="public")

    async def body(bus: Bus) -> Any:
        with in_process_worker(stack, s3, bus, tmp_path / "scratch") as worker:
            worker.profiles = {DEFAULT_PROFILE.name: DEFAULT_PROFILE, PUBLIC.name: PUBLIC}
            return await Delivery(worker).result_or_give_back(item, 1)

    result = with_bus(body)
    assert (result.outcome, result.committed) == ("succeeded", True), result.message
    stored_manifest = s3.get_object(
        Bucket=stack.bucket, Key=keys.manifest_key(item.collection, item.asset)
    )["Body"].read()
    original = AssetManifest.model_validate_json(stored_manifest).original
    stored = s3.get_object(Bucket=stack.bucket, Key=original.key)["Body"].read()
    assert len(stored) == len(upload) == original.bytes
    with Image.open(io.BytesIO(stored)) as after, Image.open(io.BytesIO(upload)) as before:
        assert after.tobytes() == before.tobytes()
        kept = after.getexif()
        assert not kept.get_ifd(0x8825)
        assert kept.get(0x010F) == "Apple"
    assert b"GPS</x:xmpmeta>" not in stored
