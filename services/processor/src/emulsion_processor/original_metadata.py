"""Removing named metadata from an original without re-encoding it, free of I/O beyond
the two files it is given.

The image data is never touched: only metadata containers are rewritten or dropped, and
everything else is copied byte for byte, so the stored original decodes to exactly the
pixels that were validated and rendered.

- Exif (JPEG APP1 "Exif", PNG eXIf, WebP EXIF) is edited in place, keeping its size and
  layout: a removed IFD entry is taken out of its directory (the directory shrinks by
  12 bytes and the freed bytes are zeroed) and every byte of its value is zeroed. Moving
  nothing keeps maker notes, whose private offsets point into the block, readable, and
  keeps Orientation where the viewer looks for it. `gps` removes the GPS IFD pointer and
  zeroes the whole GPS IFD with its values.
- XMP and IPTC are dropped whole (APP1 XMP and extended XMP, APP13; PNG iTXt/tEXt/zTXt
  packets; the WebP XMP chunk, with the RIFF size and the VP8X flag fixed). An XMP
  packet that mentions "GPS" at all (exif:GPSLatitude...) is dropped whole as well when
  `gps` is named, since XMP is the other place GPS lives (XML is not edited here).
- PNG's legacy "Raw profile type exif" text chunk (ImageMagick's) is dropped whole when
  any Exif name is stripped: no browser reads it, so no orientation is lost for display.
- GIF has no Exif; its XMP (an application extension) is dropped when `xmp` is named.
- HEIF and AVIF keep metadata as items (`meta` box: `iinf` says what each is, `iloc`
  where its bytes are). The Exif item is edited in place like the others; an XMP item is
  overwritten in place with an empty XMP packet padded with whitespace, as removing it
  would move every item after it. Metadata in `idat` or split into several extents
  (no writer met so far does this) is a `MetadataError` rather than stored unstripped.

Everything after the image data starts (a JPEG's first scan, bytes after PNG's IEND or
GIF's trailer) is copied as it is. Malformed metadata (truncated segments, lengths past
the end, Exif offsets out of range or looping) raises `MetadataError`; work is bounded
by the file's size, so no input makes this loop or hang.
"""

from __future__ import annotations

import shutil
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Final

from emulsion_contracts import stripping

COPY_CHUNK: Final = 1024 * 1024
_JPEG_EXIF: Final = b"Exif\x00\x00"
_JPEG_XMP: Final = b"http://ns.adobe.com/xap/1.0/\x00"
_JPEG_XMP_EXTENDED: Final = b"http://ns.adobe.com/xmp/extension/\x00"
_JPEG_IPTC: Final = b"Photoshop 3.0\x00"
_PNG_SIGNATURE: Final = b"\x89PNG\r\n\x1a\n"
_PNG_TEXT: Final = (b"tEXt", b"zTXt", b"iTXt")
_PNG_XMP_KEYWORD: Final = b"XML:com.adobe.xmp"
_PNG_EXIF_KEYWORD: Final = b"Raw profile type exif"
_PNG_IPTC_KEYWORD: Final = b"Raw profile type iptc"
_WEBP_VP8X_XMP: Final = 0x04
_GIF_XMP: Final = b"XMP DataXMP"
# Bytes per value of each TIFF field type (TIFF 6.0 and the Exif additions).
_TYPE_SIZES: Final[dict[int, int]] = {
    1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4,
}  # fmt: skip
_GPS_POINTER: Final = 0x8825
_EXIF_POINTER: Final = 0x8769
# More IFDs in one chain than any camera writes (IFD0, the thumbnail's IFD1): a longer
# chain is a loop or garbage.
_MAX_CHAIN: Final = 8
# Segments before a JPEG's first scan, which are held until the scan starts: cameras write
# a dozen or so; a file of millions of empty segments would otherwise hold gigabytes.
_MAX_JPEG_SEGMENTS: Final = 4096


class MetadataError(ValueError):
    """The metadata cannot be read well enough to strip it safely."""


@dataclass(frozen=True, slots=True)
class Plan:
    """What to remove, from the profile's names (already checked when it was loaded)."""

    gps: bool = False
    xmp: bool = False
    iptc: bool = False
    tags: frozenset[int] = frozenset()

    @classmethod
    def from_names(cls, names: Iterable[str]) -> Plan:
        chosen = set(stripping.check_names(tuple(names)))
        return cls(
            gps=stripping.GPS in chosen,
            xmp=stripping.XMP in chosen,
            iptc=stripping.IPTC in chosen,
            tags=frozenset(stripping.EXIF_TAGS[name] for name in chosen & set(stripping.EXIF_TAGS)),
        )

    @property
    def exif(self) -> bool:
        return self.gps or bool(self.tags)

    @property
    def empty(self) -> bool:
        return not (self.exif or self.xmp or self.iptc)


@dataclass(slots=True)
class Stripped:
    format: str
    bytes: int
    # What was found and removed, for the log ("gps", "xmp", "Exif 0x927c", ...).
    removed: list[str] = field(default_factory=list)


def strip_file(source: Path, destination: Path, plan: Plan) -> Stripped:
    """Write `source` to `destination` without what `plan` names; the image data as it is."""
    # Read-write: the WebP header and VP8X flags are patched once the chunks are known.
    with source.open("rb") as src, destination.open("w+b") as dst:
        head = src.read(12)
        src.seek(0)
        if head.startswith(b"\xff\xd8"):
            result = Stripped("JPEG", 0)
            _jpeg(src, dst, plan, result)
        elif head.startswith(_PNG_SIGNATURE):
            result = Stripped("PNG", 0)
            _png(src, dst, plan, result)
        elif head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            result = Stripped("WEBP", 0)
            _webp(src, dst, plan, result)
        elif head[:6] in (b"GIF87a", b"GIF89a"):
            result = Stripped("GIF", 0)
            _gif(src, dst, plan, result)
        elif head[4:8] == b"ftyp":
            result = Stripped("HEIF", 0)
            _heif(src, dst, plan, result)
        else:
            raise MetadataError("not a JPEG, PNG, WebP, GIF, AVIF or HEIF file")
        result.bytes = dst.tell()
    return result


# -- reading ------------------------------------------------------------------------------


def _exactly(src: BinaryIO, size: int, what: str) -> bytes:
    data = src.read(size)
    if len(data) != size:
        raise MetadataError(f"{what} ends early at byte {src.tell()} ({len(data)} of {size})")
    return data


def _copy(src: BinaryIO, dst: BinaryIO, size: int, what: str) -> None:
    """Copy exactly `size` bytes in bounded chunks (image data is never held whole)."""
    while size > 0:
        chunk = src.read(min(size, COPY_CHUNK))
        if not chunk:
            raise MetadataError(f"{what} ends early at byte {src.tell()}")
        dst.write(chunk)
        size -= len(chunk)


# -- JPEG ---------------------------------------------------------------------------------


def _jpeg(src: BinaryIO, dst: BinaryIO, plan: Plan, result: Stripped) -> None:
    dst.write(_exactly(src, 2, "the JPEG"))
    # Segments up to the first scan are read (each is at most 64 KiB) and decided
    # together: an XMP packet holding GPS takes its extended parts with it.
    segments: list[
        tuple[int, bytes, bytes]
    ] = []  # marker, its raw bytes before the payload, payload
    while True:
        if len(segments) >= _MAX_JPEG_SEGMENTS:
            raise MetadataError(f"more than {_MAX_JPEG_SEGMENTS} JPEG segments before the image")
        start = src.tell()
        first = _exactly(src, 2, "a JPEG marker")
        if first[0] != 0xFF:
            raise MetadataError(f"expected a JPEG marker at byte {start}, found {first[0]:#04x}")
        prefix = bytearray(first)  # amortised appends: a long run of fill bytes stays linear
        while prefix[-1] == 0xFF:  # fill bytes before the marker code
            prefix += _exactly(src, 1, "a JPEG marker")
        marker = prefix[-1]
        if marker in (0xD8, 0xD9, 0xDA) or 0xD0 <= marker <= 0xD7 or marker == 0x01:
            # Standalone markers carry no length; from a scan (or an early end) on,
            # everything is image data (or past the image) and is copied as it is.
            segments.append((marker, bytes(prefix), b""))
            if marker in (0xDA, 0xD9):
                break
            continue
        length_bytes = _exactly(src, 2, f"the length of JPEG segment {marker:#04x}")
        length = struct.unpack(">H", length_bytes)[0]
        if length < 2:
            raise MetadataError(f"JPEG segment {marker:#04x} at byte {start} has length {length}")
        payload = _exactly(src, length - 2, f"JPEG segment {marker:#04x} at byte {start}")
        segments.append((marker, bytes(prefix) + length_bytes, payload))
    drop_xmp = plan.xmp or (
        plan.gps
        and any(
            marker == 0xE1 and _is_jpeg_xmp(payload) and b"GPS" in payload
            for marker, _, payload in segments
        )
    )
    for marker, raw, payload in segments:
        if marker == 0xE1 and payload.startswith(_JPEG_EXIF) and plan.exif:
            edited = bytearray(payload)
            result.removed += _strip_tiff(edited, len(_JPEG_EXIF), plan)
            payload = bytes(edited)
        elif marker == 0xE1 and _is_jpeg_xmp(payload) and drop_xmp:
            result.removed.append("xmp")
            continue
        elif marker == 0xED and payload.startswith(_JPEG_IPTC) and plan.iptc:
            result.removed.append("iptc")
            continue
        dst.write(raw)
        dst.write(payload)
    shutil.copyfileobj(src, dst, COPY_CHUNK)


def _is_jpeg_xmp(payload: bytes) -> bool:
    return payload.startswith(_JPEG_XMP) or payload.startswith(_JPEG_XMP_EXTENDED)


# -- PNG ----------------------------------------------------------------------------------


def _png(src: BinaryIO, dst: BinaryIO, plan: Plan, result: Stripped) -> None:
    dst.write(_exactly(src, len(_PNG_SIGNATURE), "the PNG signature"))
    while True:
        start = src.tell()
        header = src.read(8)
        if not header:
            raise MetadataError("the PNG ends before its IEND chunk")
        if len(header) != 8:
            raise MetadataError(f"a PNG chunk header at byte {start} ends early")
        length, kind = struct.unpack(">I4s", header)
        if length > 0x7FFFFFFF:
            raise MetadataError(f"PNG chunk {kind!r} at byte {start} claims {length} bytes")
        if kind == b"eXIf" and plan.exif:
            exif = bytearray(_exactly(src, length, "the PNG eXIf chunk"))
            _exactly(src, 4, "the PNG eXIf chunk's CRC")
            result.removed += _strip_tiff(exif, 0, plan)
            _png_chunk(dst, kind, bytes(exif))
        elif kind in _PNG_TEXT:
            data = _exactly(src, length, f"the PNG {kind.decode('latin-1')} chunk")
            crc = _exactly(src, 4, "a PNG chunk's CRC")
            dropped = _png_text_dropped(data, plan)
            if dropped:
                result.removed.append(dropped)
                continue
            dst.write(header + data + crc)
        else:
            dst.write(header)
            _copy(src, dst, length + 4, f"PNG chunk {kind!r} at byte {start}")
            if kind == b"IEND":
                shutil.copyfileobj(src, dst, COPY_CHUNK)
                return


def _png_text_dropped(data: bytes, plan: Plan) -> str | None:
    """The name a text chunk is dropped for, or None to keep it."""
    keyword = data.split(b"\x00", 1)[0]
    if keyword == _PNG_XMP_KEYWORD and (plan.xmp or (plan.gps and b"GPS" in data)):
        return "xmp"
    if keyword == _PNG_IPTC_KEYWORD and plan.iptc:
        return "iptc"
    if keyword == _PNG_EXIF_KEYWORD and plan.exif:
        return "exif text"
    return None


def _png_chunk(dst: BinaryIO, kind: bytes, data: bytes) -> None:
    dst.write(struct.pack(">I4s", len(data), kind))
    dst.write(data)
    dst.write(struct.pack(">I", zlib.crc32(kind + data)))


# -- WebP ---------------------------------------------------------------------------------


def _webp(src: BinaryIO, dst: BinaryIO, plan: Plan, result: Stripped) -> None:
    header = _exactly(src, 12, "the RIFF header")
    riff_size = struct.unpack("<I", header[4:8])[0]
    end = 8 + riff_size
    dst.write(header)  # the size is written again once the chunks are known
    vp8x_at: int | None = None
    while src.tell() < end:
        start = src.tell()
        chunk_header = _exactly(src, 8, f"a WebP chunk header at byte {start}")
        kind, size = struct.unpack("<4sI", chunk_header)
        padded = size + (size & 1)
        if start + 8 + padded > end:
            raise MetadataError(f"WebP chunk {kind!r} at byte {start} runs past the RIFF end")
        if kind == b"EXIF" and plan.exif:
            exif = bytearray(_exactly(src, padded, "the WebP EXIF chunk"))
            base = len(_JPEG_EXIF) if exif.startswith(_JPEG_EXIF) else 0
            result.removed += _strip_tiff(exif, base, plan)
            dst.write(chunk_header)
            dst.write(exif)
        elif kind == b"XMP ":
            data = _exactly(src, padded, "the WebP XMP chunk")
            if plan.xmp or (plan.gps and b"GPS" in data):
                result.removed.append("xmp")
                continue
            dst.write(chunk_header)
            dst.write(data)
        else:
            if kind == b"VP8X":
                vp8x_at = dst.tell()
            dst.write(chunk_header)
            _copy(src, dst, padded, f"WebP chunk {kind!r} at byte {start}")
    written_end = dst.tell()
    shutil.copyfileobj(src, dst, COPY_CHUNK)  # anything past the RIFF, as it is
    after = dst.tell()
    dst.seek(4)
    dst.write(struct.pack("<I", written_end - 8))
    if vp8x_at is not None and "xmp" in result.removed:
        # The VP8X flags say which optional chunks follow; a reader may look for XMP.
        dst.seek(vp8x_at + 8)
        flags = dst.read(1)
        if len(flags) != 1:
            raise MetadataError("the WebP VP8X chunk is too short")
        dst.seek(vp8x_at + 8)
        dst.write(bytes([flags[0] & ~_WEBP_VP8X_XMP]))
    dst.seek(after)


# -- HEIF and AVIF ------------------------------------------------------------------------


def _heif(src: BinaryIO, dst: BinaryIO, plan: Plan, result: Stripped) -> None:
    """HEIF/AVIF: metadata are items, found through the `meta` box's `iinf` (what each
    item is) and `iloc` (where its bytes are). The file is copied whole and the items are
    edited in place, at their own size: moving nothing keeps every other item's offset
    (the image tiles' above all) valid. Exif is edited like JPEG's; an XMP item to drop is
    overwritten by an empty XMP packet padded with whitespace (XMP's own padding)."""
    shutil.copyfileobj(src, dst, COPY_CHUNK)
    end = dst.tell()
    meta = _heif_meta(dst, end)
    types, locations, idat = _heif_items(meta)
    for item, (kind, content_type) in sorted(types.items()):
        is_exif = kind == b"Exif"
        is_xmp = kind == b"mime" and content_type == b"application/rdf+xml"
        if not (is_exif and plan.exif) and not is_xmp:
            continue
        offset, length = _heif_extent(locations.get(item), idat, end, item)
        dst.seek(offset)
        data = bytearray(_exactly(dst, length, f"HEIF item {item}"))
        if is_exif:
            if length < 4:
                raise MetadataError(f"the HEIF Exif item {item} is too short")
            base = 4 + struct.unpack_from(">I", data, 0)[0]
            result.removed += _strip_tiff(data, base, plan)
        elif plan.xmp or (plan.gps and b"GPS" in data):
            data[:] = _blank_xmp(length)
            result.removed.append("xmp")
        else:
            continue
        dst.seek(offset)
        dst.write(data)
    dst.seek(end)


# The most the `meta` box may take; real ones are kilobytes (an iPhone's, ~5 KB).
_MAX_HEIF_META: Final = 16 * 1024 * 1024
_EMPTY_XMP_HEAD: Final = (
    b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
    b'<x:xmpmeta xmlns:x="adobe:ns:meta/"/>'
)
_EMPTY_XMP_TAIL: Final = b'<?xpacket end="w"?>'


def _blank_xmp(length: int) -> bytes:
    room = length - len(_EMPTY_XMP_HEAD) - len(_EMPTY_XMP_TAIL)
    if room < 0:
        return b" " * length  # too short for a packet: whitespace says nothing either
    return _EMPTY_XMP_HEAD + b" " * room + _EMPTY_XMP_TAIL


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, int, int]]:
    """The boxes in data[start:end]: (type, payload start, payload end)."""
    found = []
    at = start
    while at < end:
        if at + 8 > end:
            raise MetadataError(f"a HEIF box header at byte {at} runs past its parent")
        size, kind = struct.unpack_from(">I4s", data, at)
        header = 8
        if size == 1:
            if at + 16 > end:
                raise MetadataError(f"a HEIF box header at byte {at} runs past its parent")
            size = struct.unpack_from(">Q", data, at + 8)[0]
            header = 16
        elif size == 0:
            size = end - at
        if size < header or at + size > end:
            raise MetadataError(f"HEIF box {kind!r} at byte {at} has a bad size ({size})")
        found.append((kind, at + header, at + size))
        at += size
    return found


def _heif_meta(dst: BinaryIO, end: int) -> bytes:
    """The payload of the top-level `meta` box (after its version and flags)."""
    at = 0
    while at < end:
        dst.seek(at)
        header = _exactly(dst, 8, f"a HEIF box header at byte {at}")
        size, kind = struct.unpack(">I4s", header)
        length = 8
        if size == 1:
            size = struct.unpack(">Q", _exactly(dst, 8, "a HEIF box size"))[0]
            length = 16
        elif size == 0:
            size = end - at
        if size < length or at + size > end:
            raise MetadataError(f"HEIF box {kind!r} at byte {at} has a bad size ({size})")
        if kind == b"meta":
            if size > _MAX_HEIF_META:
                raise MetadataError(f"the HEIF meta box is too large ({size} bytes)")
            payload = _exactly(dst, size - length, "the HEIF meta box")
            return payload[4:]  # FullBox: version and flags
        at += size
    raise MetadataError("the HEIF file has no meta box")


_Location = tuple[int, int, list[tuple[int, int]]]  # construction method, base, extents


def _heif_items(
    meta: bytes,
) -> tuple[dict[int, tuple[bytes, bytes]], dict[int, _Location], tuple[int, int] | None]:
    """Each item's (type, content type), each item's location, and where `idat` lies
    (relative to the meta payload)."""
    types: dict[int, tuple[bytes, bytes]] = {}
    locations: dict[int, _Location] = {}
    idat: tuple[int, int] | None = None
    for kind, start, stop in _boxes(meta, 0, len(meta)):
        if kind == b"iinf":
            version = meta[start]
            first = start + 4 + (2 if version == 0 else 4)
            for entry, entry_start, entry_stop in _boxes(meta, first, stop):
                if entry == b"infe":
                    item, info = _infe(meta[entry_start:entry_stop])
                    if item is not None:
                        types[item] = info
        elif kind == b"iloc":
            locations = _iloc(meta[start:stop])
        elif kind == b"idat":
            idat = (start, stop)
    return types, locations, idat


def _infe(box: bytes) -> tuple[int | None, tuple[bytes, bytes]]:
    if len(box) < 4 or box[0] not in (2, 3):
        return None, (b"", b"")  # versions 0 and 1 predate item types
    id_size = 2 if box[0] == 2 else 4
    at = 4 + id_size + 2
    if len(box) < at + 4:
        raise MetadataError("a HEIF item info entry is too short")
    item = int.from_bytes(box[4 : 4 + id_size], "big")
    kind = box[at : at + 4]
    # item_name, then (for `mime` items) content_type: NUL-terminated strings.
    strings = box[at + 4 :].split(b"\0")
    content_type = strings[1] if kind == b"mime" and len(strings) > 1 else b""
    return item, (kind, content_type)


def _iloc(box: bytes) -> dict[int, _Location]:
    reader = _Reader(box)
    version = reader.take(1)
    reader.take(3)
    sizes = reader.take(1)
    offset_size, length_size = sizes >> 4, sizes & 15
    sizes = reader.take(1)
    base_size, index_size = sizes >> 4, (sizes & 15 if version in (1, 2) else 0)
    count = reader.take(2 if version < 2 else 4)
    locations: dict[int, _Location] = {}
    for _ in range(count):
        item = reader.take(2 if version < 2 else 4)
        method = reader.take(2) & 15 if version in (1, 2) else 0
        reader.take(2)  # data reference index
        base = reader.take(base_size)
        extents = []
        for _ in range(reader.take(2)):
            reader.take(index_size)
            extents.append((reader.take(offset_size), reader.take(length_size)))
        locations[item] = (method, base, extents)
    return locations


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    def take(self, size: int) -> int:
        if size not in (0, 1, 2, 3, 4, 8) or self.at + size > len(self.data):
            raise MetadataError("the HEIF item locations (iloc) run past their box")
        value = int.from_bytes(self.data[self.at : self.at + size], "big")
        self.at += size
        return value


def _heif_extent(
    location: _Location | None, idat: tuple[int, int] | None, end: int, item: int
) -> tuple[int, int]:
    """Where a metadata item's bytes are in the file: one extent, in the file (method 0)."""
    if location is None:
        raise MetadataError(f"HEIF item {item} has no location")
    method, base, extents = location
    if method != 0 or len(extents) != 1:
        # idat-held or split metadata: no writer Emulsion has met does this; refusing
        # is safer than storing the original with what the profile strips.
        raise MetadataError(f"HEIF item {item} is stored in a way not handled here")
    offset, length = extents[0]
    start = base + offset
    if length == 0 or start + length > end:
        raise MetadataError(f"HEIF item {item} lies outside the file")
    return start, length


# -- GIF ----------------------------------------------------------------------------------


def _gif(src: BinaryIO, dst: BinaryIO, plan: Plan, result: Stripped) -> None:
    screen = _exactly(src, 13, "the GIF header")
    dst.write(screen)
    if screen[10] & 0x80:  # a global colour table
        _copy(src, dst, 3 * (2 << (screen[10] & 0x07)), "the GIF colour table")
    while True:
        start = src.tell()
        introducer = _exactly(src, 1, "a GIF block")
        if introducer == b"\x3b":  # the trailer: the rest is past the image
            dst.write(introducer)
            shutil.copyfileobj(src, dst, COPY_CHUNK)
            return
        if introducer == b"\x2c":  # an image: descriptor, colour table, LZW data
            descriptor = _exactly(src, 9, "a GIF image descriptor")
            dst.write(introducer + descriptor)
            if descriptor[8] & 0x80:
                _copy(src, dst, 3 * (2 << (descriptor[8] & 0x07)), "a GIF colour table")
            dst.write(_exactly(src, 1, "a GIF image's code size"))
            _gif_sub_blocks(src, dst)
        elif introducer == b"\x21":
            label = _exactly(src, 1, "a GIF extension")
            if label == b"\xff":
                size = _exactly(src, 1, "a GIF application extension")
                ident = _exactly(src, size[0], "a GIF application extension")
                if ident == _GIF_XMP and plan.xmp:
                    _gif_sub_blocks(src, None)
                    result.removed.append("xmp")
                    continue
                dst.write(introducer + label + size + ident)
            else:
                dst.write(introducer + label)
            _gif_sub_blocks(src, dst)
        else:
            raise MetadataError(f"unknown GIF block {introducer[0]:#04x} at byte {start}")


def _gif_sub_blocks(src: BinaryIO, dst: BinaryIO | None) -> None:
    """Copy (or skip, with `dst` None) sub-blocks up to and including the terminator."""
    while True:
        size = _exactly(src, 1, "a GIF sub-block")
        data = _exactly(src, size[0], "a GIF sub-block")
        if dst is not None:
            dst.write(size + data)
        if size == b"\x00":
            return


# -- Exif (a TIFF structure) --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Entry:
    at: int  # absolute position of the 12-byte entry in the buffer
    tag: int
    type: int
    count: int
    value: int  # the 4-byte value field, as an offset


class _Tiff:
    def __init__(self, data: bytearray, base: int) -> None:
        self.data = data
        self.base = base
        if len(data) < base + 8:
            raise MetadataError("the Exif block is shorter than a TIFF header")
        order = bytes(data[base : base + 2])
        if order == b"II":
            self.order = "<"
        elif order == b"MM":
            self.order = ">"
        else:
            raise MetadataError("the Exif block has no TIFF byte order mark")
        if self.unpack("H", 2) != 42:
            raise MetadataError("the Exif block's TIFF header is not 42")

    def unpack(self, code: str, offset: int) -> int:
        """The value at `offset` (from the TIFF header); range-checked, never past the end."""
        size = struct.calcsize(code)
        at = self.base + offset
        if offset < 0 or at + size > len(self.data):
            raise MetadataError(f"an Exif offset ({offset}) points past the block")
        return int(struct.unpack_from(self.order + code, self.data, at)[0])

    def entries(self, offset: int) -> list[_Entry]:
        count = self.unpack("H", offset)
        if offset < 8 or self.base + offset + 2 + 12 * count + 4 > len(self.data):
            raise MetadataError(f"an Exif IFD at {offset} with {count} entries runs past the block")
        found = []
        for index in range(count):
            position = offset + 2 + 12 * index
            found.append(
                _Entry(
                    at=self.base + position,
                    tag=self.unpack("H", position),
                    type=self.unpack("H", position + 2),
                    count=self.unpack("I", position + 4),
                    value=self.unpack("I", position + 8),
                )
            )
        return found

    def chain(self) -> list[int]:
        """The offsets of IFD0, IFD1, ...: every IFD reachable through "next" pointers."""
        offsets: list[int] = []
        offset = self.unpack("I", 4)
        while offset:
            if offset in offsets or len(offsets) >= _MAX_CHAIN:
                raise MetadataError("the Exif IFD chain loops")
            offsets.append(offset)
            count = self.unpack("H", offset)
            offset = self.unpack("I", offset + 2 + 12 * count)
        return offsets

    def zero_value(self, entry: _Entry) -> None:
        size = _TYPE_SIZES.get(entry.type)
        if size is None:
            raise MetadataError(f"Exif tag {entry.tag:#06x} has unknown type {entry.type}")
        total = size * entry.count
        if total <= 4:
            return  # inline: removed with its entry
        start = self.base + entry.value
        if entry.value < 8 or start + total > len(self.data):
            raise MetadataError(f"the value of Exif tag {entry.tag:#06x} lies outside the block")
        self.data[start : start + total] = bytes(total)

    def remove(self, ifd: int, entry: _Entry) -> None:
        """Take `entry` out of the IFD at `ifd` in place: the later entries and the next-IFD
        pointer move up by 12 bytes and the 12 bytes freed at the end are zeroed."""
        count = self.unpack("H", ifd)
        start = self.base + ifd
        end = start + 2 + 12 * count + 4
        self.data[entry.at : end - 12] = self.data[entry.at + 12 : end]
        self.data[end - 12 : end] = bytes(12)
        struct.pack_into(self.order + "H", self.data, start, count - 1)

    def zero_ifd(self, offset: int) -> None:
        for entry in self.entries(offset):
            self.zero_value(entry)
        count = self.unpack("H", offset)
        start = self.base + offset
        self.data[start : start + 2 + 12 * count + 4] = bytes(2 + 12 * count + 4)


def _strip_tiff(data: bytearray, base: int, plan: Plan) -> list[str]:
    """Remove what `plan` names from the TIFF structure at `data[base:]`, in place."""
    tiff = _Tiff(data, base)
    removed: list[str] = []
    chain = tiff.chain()
    if not chain:
        return removed
    ifd0 = chain[0]
    exif_pointer = _find(tiff, ifd0, _EXIF_POINTER)
    exif_ifd = exif_pointer.value if exif_pointer is not None else None
    directories = [*chain, *([exif_ifd] if exif_ifd else [])]
    if exif_ifd is not None and exif_ifd in chain:
        raise MetadataError("the Exif IFD pointer loops back into the IFD chain")
    # Loops, not single lookups: a tag may (wrongly) appear twice in one IFD, and each
    # pass removes an entry, so they end within the IFD's entry count.
    while plan.gps and (gps := _find(tiff, ifd0, _GPS_POINTER)) is not None:
        if gps.value in directories:
            raise MetadataError("the GPS IFD pointer points at another IFD")
        tiff.zero_ifd(gps.value)
        tiff.remove(ifd0, _refind(tiff, ifd0, _GPS_POINTER))
        removed.append("gps")
    for ifd in directories:
        for tag in sorted(plan.tags):
            while (entry := _find(tiff, ifd, tag)) is not None:
                tiff.zero_value(entry)
                tiff.remove(ifd, _refind(tiff, ifd, tag))
                removed.append(f"Exif {tag:#06x}")
    return removed


def _find(tiff: _Tiff, ifd: int, tag: int) -> _Entry | None:
    return next((e for e in tiff.entries(ifd) if e.tag == tag), None)


def _refind(tiff: _Tiff, ifd: int, tag: int) -> _Entry:
    """The entry for `tag`, read again: zeroing values may have overwritten the IFD itself
    in a hostile block whose values overlap its directories."""
    entry = _find(tiff, ifd, tag)
    if entry is None:
        raise MetadataError(f"Exif tag {tag:#06x} was overwritten by another tag's value")
    return entry
