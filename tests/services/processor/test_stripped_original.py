"""The stored original under a profile that strips metadata, on the real NATS and MinIO:
the named metadata is gone, the orientation and the pixels stay; under the default
profile the original is the upload, byte for byte.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from emulsion_contracts import keys
from emulsion_contracts.manifest import AssetManifest
from emulsion_contracts.messages import ItemResult, StyleSpec, WorkItem
from emulsion_contracts.profiles import DEFAULT_PROFILE, OriginalPolicy, Profile
from emulsion_contracts.reasons import FailureReason
from emulsion_devstack.stack import Endpoints
from emulsion_processor.delivery import Delivery

from .conftest import Bus, in_process_worker, object_keys, stage, work_item

ORIENTATION = 0x0112
GPS_IFD = 0x8825
EXIF_IFD = 0x8769
PUBLIC = Profile(
    name="public",
    styles=(StyleSpec(name="thumb", width=100, height=100, fit="crop"),),
    original=OriginalPolicy(strip=("gps", "MakerNote")),
)


def photo_with_gps() -> bytes:
    """A camera-like JPEG: orientation, make, a maker note and where it was taken."""
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    exif[0x010F] = "SecretCamera"  # Make
    exif.get_ifd(EXIF_IFD)[0x927C] = b"secret-maker-note"  # MakerNote
    gps = exif.get_ifd(GPS_IFD)
    gps[1] = "N"  # GPSLatitudeRef
    gps[2] = (51.0, 30.0, 26.0)  # GPSLatitude
    gps[3] = "W"  # GPSLongitudeRef
    gps[4] = (0.0, 7.0, 39.0)  # GPSLongitude
    buffer = io.BytesIO()
    image = Image.linear_gradient("L").resize((320, 240)).convert("RGB")
    image.save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()


def ingest(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path, data: bytes, profile: str
) -> tuple[WorkItem, ItemResult]:
    item = work_item(stage(s3, stack.bucket, data), profile=profile)

    async def body(bus: Bus) -> ItemResult:
        with in_process_worker(stack, s3, bus, tmp_path) as worker:
            worker.profiles = {DEFAULT_PROFILE.name: DEFAULT_PROFILE, PUBLIC.name: PUBLIC}
            result = await Delivery(worker).result_or_give_back(item, 1)
            assert isinstance(result, ItemResult)
            return result

    return item, with_bus(body)


def scan(data: bytes) -> bytes:
    """A JPEG from its first scan on: the entropy-coded image data."""
    position = 2
    while data[position + 1] != 0xDA:
        position += 2 + struct.unpack(">H", data[position + 2 : position + 4])[0]
    return data[position:]


def test_a_stripping_profile_stores_the_original_without_gps_and_upright(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    upload = photo_with_gps()
    item, result = ingest(stack, s3, with_bus, tmp_path, upload, "public")
    assert (result.outcome, result.committed) == ("succeeded", True), result.message
    assert result.original is not None
    stored = s3.get_object(Bucket=stack.bucket, Key=result.original)
    data = stored["Body"].read()
    assert stored["ContentType"] == "image/jpeg"
    with Image.open(io.BytesIO(data)) as image:
        exif = image.getexif()
        assert exif.get_ifd(GPS_IFD) == {}
        assert GPS_IFD not in exif
        assert exif[ORIENTATION] == 6  # still displays upright
        assert exif[0x010F] == "SecretCamera"  # not named, so kept
        assert 0x927C not in exif.get_ifd(EXIF_IFD)
        assert (result.width, result.height) == (240, 320)
    assert b"secret-maker-note" not in data
    assert scan(data) == scan(upload)  # the image data itself, byte for byte
    body = s3.get_object(Bucket=stack.bucket, Key=keys.manifest_key(item.collection, item.asset))
    manifest = AssetManifest.from_bytes(body["Body"].read())
    assert manifest.original.bytes == len(data)


def test_the_default_profile_stores_the_upload_byte_for_byte(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    upload = photo_with_gps()
    _, result = ingest(stack, s3, with_bus, tmp_path, upload, DEFAULT_PROFILE.name)
    assert (result.outcome, result.committed) == ("succeeded", True), result.message
    assert result.original is not None
    assert s3.get_object(Bucket=stack.bucket, Key=result.original)["Body"].read() == upload


# Pillow warns while rendering the broken Exif (and renders it anyway): that is the point.
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_metadata_that_cannot_be_stripped_safely_fails_the_item_and_stores_nothing(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    # A GPS IFD pointer past the end of the Exif block: the decoder shrugs, but the
    # profile promises no GPS, which cannot be kept without reading where it is.
    upload = photo_with_gps()
    exif_at = upload.index(b"Exif\x00\x00") + 6
    little = upload[exif_at : exif_at + 2] == b"II"
    tag = struct.pack("<H" if little else ">H", GPS_IFD)
    pointer = upload.index(tag, exif_at) + 8
    broken = (
        upload[:pointer] + struct.pack("<I" if little else ">I", 60_000) + upload[pointer + 4 :]
    )
    item, result = ingest(stack, s3, with_bus, tmp_path, broken, "public")
    assert (result.outcome, result.reason) == ("failed", FailureReason.CORRUPT_IMAGE)
    assert result.message is not None and "metadata the profile strips" in result.message
    for area in (keys.ORIGINALS, keys.DERIVATIVES, keys.MANIFESTS):
        assert object_keys(s3, stack.bucket, f"{area}{item.collection}/") == []
