"""On the real stack: an upload's manifest records the name its form recorded (Unicode),
the SHA-256 of the uploaded bytes, the photo's metadata and its placeholder; a focal-point
re-render keeps them."""

from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from emulsion_contracts import keys
from emulsion_contracts.messages import ItemResult
from emulsion_devstack.stack import Endpoints
from emulsion_processor import outcomes, rerender
from emulsion_runtime import storage

from .conftest import Bus, in_process_worker, work_item
from .test_worker import manifest_of

NAME = "写真 2026.JPG"


def exif_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "FUJIFILM"
    exif[0x013B] = "Zoë Ōkubo".encode()
    exif.get_ifd(0x8769).update(
        {0x9003: "2026:05:04 13:14:15", 0x9011: "-03:30", 0x829A: IFDRational(1, 60)}
    )
    exif.get_ifd(0x8825).update({1: "N", 2: (1.0, 2.0, 3.0), 3: "E", 4: (4.0, 5.0, 6.0)})
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (30, 90, 200)).save(buffer, "JPEG", quality=90, exif=exif)
    return buffer.getvalue()


def test_the_manifest_records_the_uploaded_name_checksum_metadata_and_placeholder(
    stack: Endpoints, s3: Any, with_bus: Any, tmp_path: Path
) -> None:
    data = exif_jpeg()
    collection = f"c-{uuid.uuid4().hex[:8]}"
    source = keys.staging_key(collection, keys.new_ulid(), NAME)
    s3.put_object(
        Bucket=stack.bucket,
        Key=source,
        Body=data,
        ContentType="image/jpeg",
        Metadata={
            storage.UPLOAD_COLLECTION_METADATA: collection,
            storage.UPLOAD_FILENAME_METADATA: storage.encode_filename(NAME),
        },
    )
    item = work_item(source, asset=NAME)

    async def body(bus: Bus) -> ItemResult:
        with in_process_worker(stack, s3, bus, tmp_path) as worker:
            return await worker.process(item, 1)

    assert with_bus(body).committed
    manifest = manifest_of(s3, stack.bucket, item)
    assert manifest.original.uploaded_name == NAME
    assert manifest.original.filename == outcomes.source_filename(source)  # ASCII, in the key
    assert manifest.original.sha256 == hashlib.sha256(data).hexdigest()
    assert manifest.metadata is not None
    assert manifest.metadata.artist == "Zoë Ōkubo"
    assert manifest.metadata.camera_make == "FUJIFILM"
    assert manifest.metadata.exposure_time == pytest.approx(1 / 60, rel=1e-5)
    assert manifest.metadata.taken_at is not None
    assert manifest.metadata.taken_at.isoformat() == "2026-05-04T13:14:15-03:30"
    assert manifest.metadata.gps is not None  # the default profile keeps GPS
    assert manifest.placeholder is not None
    assert manifest.placeholder.dominant_color == "#1e5ac8"
    # A focal-point re-render makes new crops of the same original: the same description.
    again = rerender.build_manifest(item, manifest, ())
    assert (again.metadata, again.placeholder) == (manifest.metadata, manifest.placeholder)
    # Its capture-order index entry, written before the commit, sorts at the UTC time.
    entry = keys.taken_key(collection, NAME, manifest.version, manifest.metadata.taken_at)
    assert manifest.taken_key() == entry
    assert entry.split("/")[2] == "20260504T164415.000000Z"
    assert s3.head_object(Bucket=stack.bucket, Key=entry)["ContentLength"] == 0


def test_a_name_that_is_not_a_recorded_one_is_left_out() -> None:
    assert storage.decode_filename(storage.encode_filename("a/b/写真.jpg")) == "写真.jpg"
    assert storage.decode_filename("%FF%FE") is None  # not UTF-8
    assert storage.decode_filename("a%0Ab.jpg") is None  # a control character
    assert storage.decode_filename(None) is None
    long = storage.encode_filename("写" * 1000)
    assert len(long) <= storage.UPLOAD_FILENAME_ENCODED_MAX
    assert storage.decode_filename(long) == "写" * (storage.UPLOAD_FILENAME_ENCODED_MAX // 9)
