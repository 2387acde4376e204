"""Stripping metadata from HEIC and AVIF originals, made by real encoders: the Exif GPS
block and XMP go, the orientation and every byte of the image data stay, and the file
still opens to the same pixels."""

from __future__ import annotations

import io
from pathlib import Path

import pillow_heif
import pytest
from PIL import Image

from emulsion_processor.original_metadata import MetadataError, Plan, strip_file
from tests import phone_photos as photos

GPS_IFD = 0x8825
XMP = (
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF><rdf:Description '
    b'exif:GPSLatitude="51,30.0N" dc:title="secret-xmp"/></rdf:RDF></x:xmpmeta>'
)


def exif_with_gps() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Apple"
    exif.get_ifd(GPS_IFD).update({1: "N", 2: (51.0, 30.0, 0.0), 3: "W", 4: (0.0, 7.0, 0.0)})
    return exif.tobytes()


def heic_with_metadata() -> bytes:
    buffer = io.BytesIO()
    picture = photos.marked(256, 192)
    picture.save(buffer, "HEIF", exif=exif_with_gps(), xmp=XMP, quality=80, tile_size=128)
    return buffer.getvalue()


def avif_with_metadata() -> bytes:
    buffer = io.BytesIO()
    photos.marked(256, 192).save(buffer, "AVIF", exif=exif_with_gps(), xmp=XMP, speed=10)
    return buffer.getvalue()


def stripped(tmp_path: Path, data: bytes, *names: str) -> bytes:
    source, destination = tmp_path / "source", tmp_path / "stripped"
    source.write_bytes(data)
    result = strip_file(source, destination, Plan.from_names(names))
    assert result.format == "HEIF"
    return destination.read_bytes()


def metadata(data: bytes) -> tuple[Image.Exif, bytes]:
    heif = pillow_heif.open_heif(io.BytesIO(data))
    exif = Image.Exif()
    exif.load(heif.info.get("exif") or b"")
    return exif, heif.info.get("xmp") or b""


@pytest.mark.parametrize("make", [heic_with_metadata, avif_with_metadata])
def test_gps_goes_from_exif_and_xmp_and_the_rest_stays(tmp_path: Path, make: object) -> None:
    original = make()  # type: ignore[operator]
    result = stripped(tmp_path, original, "gps")
    assert len(result) == len(original)  # edited in place: no offset moved
    assert b"secret-xmp" not in result and b"GPSLatitude" not in result
    with Image.open(io.BytesIO(result)) as after, Image.open(io.BytesIO(original)) as before:
        assert after.tobytes() == before.tobytes()
        assert after.size == before.size
    if make is heic_with_metadata:
        exif, xmp = metadata(result)
        assert not exif.get_ifd(GPS_IFD)
        assert exif.get(0x010F) == "Apple"
        assert xmp.startswith(b"<?xpacket") and b"xmpmeta" in xmp


def test_named_exif_tags_go_and_a_profile_without_xmp_keeps_it(tmp_path: Path) -> None:
    original = heic_with_metadata()
    result = stripped(tmp_path, original, "Make")
    exif, xmp = metadata(result)
    assert exif.get(0x010F) is None
    assert exif.get_ifd(GPS_IFD)  # not named: kept
    assert b"secret-xmp" in xmp


def test_a_heif_with_broken_item_locations_is_a_metadata_error(tmp_path: Path) -> None:
    data = bytearray(heic_with_metadata())
    iloc = data.index(b"iloc")
    data[iloc + 4 : iloc + 40] = b"\xff" * 36
    with pytest.raises(MetadataError):
        stripped(tmp_path, bytes(data), "gps")
