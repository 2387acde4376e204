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
        else:
            raise MetadataError("not a JPEG, PNG, WebP or GIF file")
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
