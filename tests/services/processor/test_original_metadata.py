"""Stripping metadata from an original: what is named goes, everything else (the image
data above all) stays byte for byte, and malformed metadata is a clear error.

Images are built here from Pillow's plain output plus metadata containers assembled by
hand, so the tests choose the segment and chunk orders (not only Pillow's) and can break
the containers on purpose.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from emulsion_contracts import stripping
from emulsion_processor.original_metadata import MetadataError, Plan, Stripped, strip_file

ORIENTATION = 0x0112
GPS_IFD = 0x8825
EXIF_IFD = 0x8769
XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><exif:GPSLatitude>51,30N</exif:GPSLatitude></x:xmpmeta>'
PLAIN_XMP = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><dc:title>secret-xmp</dc:title></x:xmpmeta>'
IPTC = b"Photoshop 3.0\x008BIM\x04\x04\x00\x00\x00\x00\x00\x0c\x1c\x02\x05\x00\x07secret!"
# Tags of IFD0 and of the Exif IFD a test may set, each to a value found nowhere else.
IFD0_TAGS = ("ImageDescription", "Make", "Model", "Software", "Artist", "Copyright")
EXIF_IFD_TAGS = ("MakerNote", "UserComment", "BodySerialNumber", "LensModel", "CameraOwnerName")
SETTINGS = settings(
    max_examples=60, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def secret(name: str) -> str:
    return f"secret-{name}-value"


def exif_block(
    ifd0: tuple[str, ...],
    exif_ifd: tuple[str, ...],
    orientation: int | None,
    gps: bool,
    big_endian: bool,
) -> Image.Exif:
    exif = Image.Exif()
    if big_endian:
        exif.endian = ">"
    for name in ifd0:
        exif[stripping.EXIF_TAGS[name]] = secret(name)
    if orientation is not None:
        exif[ORIENTATION] = orientation
    if exif_ifd:
        inner = exif.get_ifd(EXIF_IFD)
        for name in exif_ifd:
            value = secret(name)
            inner[stripping.EXIF_TAGS[name]] = (
                value.encode() if name in ("MakerNote", "UserComment") else value
            )
    if gps:
        located = exif.get_ifd(GPS_IFD)
        located[1] = "N"  # GPSLatitudeRef
        located[2] = (51.0, 30.0, 26.0)  # GPSLatitude
        located[27] = b"ASCII\x00\x00\x00secret-gps-method"  # GPSProcessingMethod
    return exif


def plain(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    options = {"lossless": True} if fmt == "WEBP" else {}
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


# -- containers, assembled by hand ---------------------------------------------------------


def jpeg_segments(data: bytes) -> tuple[list[bytes], bytes]:
    """(the segments between SOI and the first SOS, everything from SOS on)."""
    position, segments = 2, []
    while data[position + 1] != 0xDA:
        length = struct.unpack(">H", data[position + 2 : position + 4])[0]
        segments.append(data[position : position + 2 + length])
        position += 2 + length
    return segments, data[position:]


def jpeg_segment(marker: int, payload: bytes) -> bytes:
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    position, chunks = 8, []
    while position < len(data):
        length, kind = struct.unpack(">I4s", data[position : position + 8])
        chunks.append((kind, data[position + 8 : position + 8 + length]))
        position += 12 + length
    return chunks


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return (
        struct.pack(">I4s", len(payload), kind)
        + payload
        + struct.pack(">I", zlib.crc32(kind + payload))
    )


def webp_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    position, chunks = 12, []
    while position < len(data):
        kind, size = struct.unpack("<4sI", data[position : position + 8])
        chunks.append((kind, data[position + 8 : position + 8 + size]))
        position += 8 + size + (size & 1)
    return chunks


def webp_file(chunks: list[tuple[bytes, bytes]]) -> bytes:
    body = b"".join(
        struct.pack("<4sI", kind, len(data)) + data + b"\x00" * (len(data) & 1)
        for kind, data in chunks
    )
    return b"RIFF" + struct.pack("<I", len(body) + 4) + b"WEBP" + body


def vp8x(width: int, height: int, flags: int) -> bytes:
    return (
        bytes([flags, 0, 0, 0])
        + (width - 1).to_bytes(3, "little")
        + (height - 1).to_bytes(3, "little")
    )


@st.composite
def originals(draw: st.DrawFn) -> tuple[str, bytes, Image.Exif, bool, bool]:
    """(format, file, its Exif, has XMP, has IPTC) with metadata in a drawn order."""
    fmt = draw(st.sampled_from(["JPEG", "PNG", "WEBP"]))
    width, height = draw(st.integers(1, 48)), draw(st.integers(1, 48))
    seed = draw(st.integers(0, 255))
    # Seeded, not Image.effect_noise: hypothesis replays a draw and needs the same file.
    image = Image.frombytes(
        "RGB", (width, height), random.Random(seed).randbytes(width * height * 3)
    )
    exif = exif_block(
        draw(st.lists(st.sampled_from(IFD0_TAGS), unique=True).map(tuple)),
        draw(st.lists(st.sampled_from(EXIF_IFD_TAGS), unique=True).map(tuple)),
        draw(st.none() | st.integers(1, 8)),
        draw(st.booleans()),
        draw(st.booleans()),
    )
    tiff = exif.tobytes()[6:]  # Pillow's block starts with "Exif\0\0"; the TIFF follows
    xmp = draw(st.sampled_from([None, XMP, PLAIN_XMP]))
    iptc = draw(st.booleans())
    if fmt == "JPEG":
        segments, scan = jpeg_segments(plain(image, "JPEG"))
        extra = [jpeg_segment(0xE1, b"Exif\x00\x00" + tiff), jpeg_segment(0xFE, b"a comment")]
        if xmp:
            extra.append(jpeg_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + xmp))
        if iptc:
            extra.append(jpeg_segment(0xED, IPTC))
        ordered = draw(st.permutations(segments + extra))
        data = b"\xff\xd8" + b"".join(ordered) + scan
    elif fmt == "PNG":
        chunks = png_chunks(plain(image, "PNG"))
        header, idats, end = chunks[0], [c for c in chunks if c[0] == b"IDAT"], chunks[-1]
        chunks_extra = [(b"eXIf", tiff), (b"tEXt", b"Comment\x00kept")]
        if xmp:
            chunks_extra.append((b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + xmp))
        if iptc:
            chunks_extra.append((b"tEXt", b"Raw profile type iptc\x00\n iptc\n 4\n73656372\n"))
        # Ancillary chunks before or after the image data (never between two IDATs).
        count = len(chunks_extra)
        before = draw(st.lists(st.booleans(), min_size=count, max_size=count))
        chunks_extra = draw(st.permutations(chunks_extra))
        data = _PNG + b"".join(
            png_chunk(kind, payload)
            for kind, payload in [
                header,
                *[c for c, first in zip(chunks_extra, before, strict=True) if first],
                *idats,
                *[c for c, first in zip(chunks_extra, before, strict=True) if not first],
                end,
            ]
        )
    else:
        image_chunk = next(
            c for c in webp_chunks(plain(image, "WEBP")) if c[0] in (b"VP8L", b"VP8 ")
        )
        exif_payload = draw(st.sampled_from([tiff, b"Exif\x00\x00" + tiff]))
        tail = [(b"EXIF", exif_payload), (b"ZZZZ", b"unknown chunk, kept")]
        flags = 0x08 | (0x04 if xmp else 0)
        if xmp:
            tail.append((b"XMP ", xmp))
        data = webp_file(
            [(b"VP8X", vp8x(width, height, flags)), image_chunk, *draw(st.permutations(tail))]
        )
        iptc = False  # WebP has no IPTC container
    return fmt, data, exif, xmp is not None, iptc


_PNG = b"\x89PNG\r\n\x1a\n"
plans = st.lists(st.sampled_from(sorted(stripping.NAMES)), unique=True, max_size=8)


def strip(
    tmp_path: Path, data: bytes, names: list[str] | tuple[str, ...]
) -> tuple[bytes, Stripped]:
    source, destination = tmp_path / "source", tmp_path / "stripped"
    source.write_bytes(data)
    result = strip_file(source, destination, Plan.from_names(names))
    return destination.read_bytes(), result


def decoded(data: bytes) -> tuple[str, tuple[int, int], bytes]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.mode, image.size, image.tobytes()


def exif_of(data: bytes) -> tuple[dict[int, object], dict[int, object], dict[int, object]]:
    with Image.open(io.BytesIO(data)) as image:
        image.load()  # PNG's eXIf after the image data is read on load
        exif = image.getexif()
        return dict(exif), dict(exif.get_ifd(EXIF_IFD)), dict(exif.get_ifd(GPS_IFD))


# -- properties ----------------------------------------------------------------------------


@SETTINGS
@given(original=originals(), names=plans)
def test_what_is_named_goes_and_everything_else_stays(
    tmp_path: Path, original: tuple[str, bytes, Image.Exif, bool, bool], names: list[str]
) -> None:
    fmt, data, _, has_xmp, has_iptc = original
    stripped, result = strip(tmp_path, data, names)
    assert result.format == fmt
    assert result.bytes == len(stripped)
    # The image data is untouched: the same pixels, and for JPEG the same scan bytes.
    assert decoded(stripped) == decoded(data)
    if fmt == "JPEG":
        assert jpeg_segments(stripped)[1] == jpeg_segments(data)[1]
    before0, before_exif, before_gps = exif_of(data)
    after0, after_exif, after_gps = exif_of(stripped)
    gone = {stripping.EXIF_TAGS[name] for name in names if name in stripping.EXIF_TAGS}
    # Orientation (and every tag not named) keeps its value: the original still displays upright.
    assert after0.get(ORIENTATION) == before0.get(ORIENTATION)
    pointers = {EXIF_IFD, GPS_IFD}
    assert {t: v for t, v in after0.items() if t not in pointers} == {
        t: v for t, v in before0.items() if t not in gone | pointers
    }
    assert after_exif == {t: v for t, v in before_exif.items() if t not in gone}
    for name in names:
        if name in stripping.EXIF_TAGS:
            assert secret(name).encode() not in stripped
    if "gps" in names:
        assert after_gps == {}
        assert b"secret-gps-method" not in stripped
        assert b"GPSLatitude" not in stripped  # nor the XMP packet that held it
    else:
        assert after_gps == before_gps
    xmp_kept = has_xmp and "xmp" not in names and not ("gps" in names and XMP in data)
    assert (b"adobe:ns:meta" in stripped) == xmp_kept
    iptc_kept = b"secret!" in stripped or b"Raw profile type iptc" in stripped
    assert iptc_kept == (has_iptc and "iptc" not in names)


@SETTINGS
@given(original=originals(), names=plans)
def test_stripping_is_deterministic_and_idempotent(
    tmp_path: Path, original: tuple[str, bytes, Image.Exif, bool, bool], names: list[str]
) -> None:
    # A redelivered item rewrites the same key with the same bytes.
    once, _ = strip(tmp_path, original[1], names)
    again, _ = strip(tmp_path, original[1], names)
    twice, second = strip(tmp_path, once, names)
    assert once == again == twice
    assert second.removed == []


@SETTINGS
@given(original=originals())
def test_an_empty_plan_changes_no_byte(
    tmp_path: Path, original: tuple[str, bytes, Image.Exif, bool, bool]
) -> None:
    stripped, result = strip(tmp_path, original[1], [])
    assert stripped == original[1]
    assert result.removed == []


@settings(
    max_examples=150, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(original=originals(), data=st.data())
def test_damaged_metadata_is_a_clear_error_never_a_crash_or_a_hang(
    tmp_path: Path, original: tuple[str, bytes, Image.Exif, bool, bool], data: st.DataObject
) -> None:
    """Truncations and overwritten bytes anywhere in the file: the result is a file or a
    MetadataError, within the deadline, never another exception."""
    raw = bytearray(original[1])
    if data.draw(st.booleans()):
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    for _ in range(data.draw(st.integers(0, 6))):
        if raw:
            at = data.draw(st.integers(0, len(raw) - 1))
            raw[at] = data.draw(
                st.sampled_from([0x00, 0x01, 0x08, 0x7F, 0xFF, data.draw(st.integers(0, 255))])
            )
    try:
        strip(tmp_path, bytes(raw), ["gps", "xmp", "iptc", "MakerNote", "Make"])
    except MetadataError as error:
        assert str(error)


# -- hostile inputs, one by one -------------------------------------------------------------


def tiff_ifd0(entries: list[tuple[int, int, int, int]], next_ifd: int = 0) -> bytes:
    """A little-endian TIFF header and IFD0 at offset 8."""
    body = struct.pack("<H", len(entries)) + b"".join(
        struct.pack("<HHII", *entry) for entry in entries
    )
    return b"II*\x00" + struct.pack("<I", 8) + body + struct.pack("<I", next_ifd)


def jpeg_with_exif(tiff: bytes) -> bytes:
    segments, scan = jpeg_segments(plain(Image.new("RGB", (8, 8)), "JPEG"))
    return b"\xff\xd8" + jpeg_segment(0xE1, b"Exif\x00\x00" + tiff) + b"".join(segments) + scan


@pytest.mark.parametrize(
    ("tiff", "says"),
    [
        (tiff_ifd0([(ORIENTATION, 3, 1, 1)], next_ifd=8), "loops"),
        (tiff_ifd0([(GPS_IFD, 4, 1, 4000)]), "points past the block"),
        (tiff_ifd0([(GPS_IFD, 4, 1, 8)]), "points at another IFD"),
        (tiff_ifd0([(EXIF_IFD, 4, 1, 8)]), "loops back"),
        (tiff_ifd0([(0x010F, 2, 4000, 26)]), "lies outside the block"),
        (tiff_ifd0([(0x010F, 99, 40, 26)]), "unknown type"),
        (b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 500), "past the block"),
        (b"XX*\x00\x08\x00\x00\x00", "byte order"),
        (b"II*", "shorter than a TIFF header"),
    ],
)
def test_malformed_exif_is_named_in_the_error(tmp_path: Path, tiff: bytes, says: str) -> None:
    with pytest.raises(MetadataError, match=says):
        strip(tmp_path, jpeg_with_exif(tiff), ["gps", "Make"])


def test_an_ifd_chain_that_loops_later_is_caught(tmp_path: Path) -> None:
    ifd0 = tiff_ifd0([(ORIENTATION, 3, 1, 1)], next_ifd=26)
    ifd1 = struct.pack("<H", 0) + struct.pack("<I", 8)  # IFD1 points back at IFD0
    with pytest.raises(MetadataError, match="loops"):
        strip(tmp_path, jpeg_with_exif(ifd0 + ifd1), ["gps"])


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (b"\xff\xd8\xff\xe1\x00\x40Exif", "ends early"),
        (b"\xff\xd8\xff\xe1\x00\x01", "has length 1"),
        (b"\xff\xd8\x00\x00", "expected a JPEG marker"),
        (b"\xff\xd8" + b"\xff" * 100_000, "ends early"),
        (b"\xff\xd8" + b"\xff\xfe\x00\x02" * 5000, "more than 4096 JPEG segments"),
        (_PNG + struct.pack(">I4s", 0x7FFFFFF0, b"eXIf"), "ends early"),
        (_PNG + struct.pack(">I4s", 0xFFFFFFF0, b"IDAT"), "claims"),
        (_PNG + png_chunk(b"IHDR", b"\x00" * 13), "before its IEND"),
        (webp_file([(b"VP8X", b"\x00" * 10)])[:-4], "ends early"),
        (b"RIFF\x40\x00\x00\x00WEBPEXIF\xff\x00\x00\x00", "runs past the RIFF end"),
        (b"GIF89a" + b"\x00" * 7 + b"\x99", "unknown GIF block"),
        (b"BM" + b"\x00" * 40, "not a JPEG, PNG, WebP, GIF, AVIF or HEIF"),
    ],
)
def test_broken_containers_are_named_in_the_error(tmp_path: Path, data: bytes, says: str) -> None:
    with pytest.raises(MetadataError, match=says):
        strip(tmp_path, data, ["gps", "xmp"])


# -- the rest of the formats ----------------------------------------------------------------


def test_webp_without_its_xmp_has_a_true_riff_size_and_vp8x_flags(tmp_path: Path) -> None:
    image = Image.effect_noise((20, 10), 50).convert("RGB")
    chunk = next(c for c in webp_chunks(plain(image, "WEBP")) if c[0] == b"VP8L")
    data = webp_file([(b"VP8X", vp8x(20, 10, 0x04)), chunk, (b"XMP ", PLAIN_XMP + b"x")])
    stripped, result = strip(tmp_path, data, ["xmp"])
    assert result.removed == ["xmp"]
    assert struct.unpack("<I", stripped[4:8])[0] == len(stripped) - 8
    assert [kind for kind, _ in webp_chunks(stripped)] == [b"VP8X", b"VP8L"]
    assert stripped[20] & 0x04 == 0
    assert decoded(stripped) == decoded(data)


def gif_xmp(packet: bytes) -> bytes:
    """XMP's GIF application extension: the packet, then the "magic trailer" that lets a
    reader that knows nothing of XMP skip it as ordinary sub-blocks."""
    return b"!\xff\x0bXMP DataXMP" + packet + bytes([1, *range(255, -1, -1), 0])


def test_gif_loses_its_xmp_and_keeps_its_frames(tmp_path: Path) -> None:
    frames = [
        Image.new("RGB", (12, 12), colour) for colour in ((255, 0, 0), (0, 255, 0), (0, 0, 255))
    ]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], comment=b"kept")
    plain_gif = buffer.getvalue()
    table = 3 * (2 << (plain_gif[10] & 0x07)) if plain_gif[10] & 0x80 else 0
    data = plain_gif[: 13 + table] + gif_xmp(PLAIN_XMP) + plain_gif[13 + table :]
    stripped, result = strip(tmp_path, data, ["gps", "xmp"])
    assert result.removed == ["xmp"]
    assert stripped == plain_gif
    assert b"secret-xmp" not in stripped and b"kept" in stripped
    with Image.open(io.BytesIO(data)) as before, Image.open(io.BytesIO(stripped)) as after:
        assert getattr(before, "n_frames", 1) == getattr(after, "n_frames", 1) == 3
        for index in range(3):
            before.seek(index)
            after.seek(index)
            assert before.convert("RGB").tobytes() == after.convert("RGB").tobytes()


def test_png_loses_the_legacy_exif_text_when_exif_is_stripped(tmp_path: Path) -> None:
    chunks = png_chunks(plain(Image.new("RGB", (4, 4)), "PNG"))
    legacy = (b"zTXt", b"Raw profile type exif\x00\x00" + zlib.compress(b"\nexif\n 4\n00000000\n"))
    data = _PNG + b"".join(png_chunk(*c) for c in [chunks[0], legacy, *chunks[1:]])
    stripped, result = strip(tmp_path, data, ["gps"])
    assert result.removed == ["exif text"]
    assert b"Raw profile type exif" not in stripped
    assert decoded(stripped) == decoded(data)
