"""What a photo's Exif says about it (capture time, camera, lens, exposure, author), read
into the manifest's `PhotoMetadata`. Pure: it reads the Exif Pillow already parsed from
the image being rendered (JPEG's APP1, PNG's eXIf, WebP's EXIF chunk, the Exif item of a
HEIF or AVIF file), so nothing is read twice.

A photo's metadata is whatever its writer put there, hostile files included: every field
is read on its own, and a value that is missing, of the wrong type, out of range or
unreadable is left out (None), never an error. Text is cut to `TEXT_MAX` characters.

Text is Unicode as the file has it: Exif's ASCII fields hold UTF-8 in practice (phones,
Lightroom, exiftool), which Pillow hands over decoded as Latin-1; it is decoded again as
UTF-8, and kept as Latin-1 only when it is not UTF-8. Windows' own author field
(XPAuthor, UTF-16) is the artist when Artist is absent.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta, timezone
from typing import Any, Final, TypeVar

from PIL import Image

from emulsion_contracts.manifest import TEXT_MAX, Gps, PhotoMetadata

T = TypeVar("T")

_EXIF_IFD: Final = 0x8769
_GPS_IFD: Final = 0x8825
# IFD0
_MAKE: Final = 0x010F
_MODEL: Final = 0x0110
_ORIENTATION: Final = 0x0112
_DATETIME: Final = 0x0132
_ARTIST: Final = 0x013B
_COPYRIGHT: Final = 0x8298
_XP_AUTHOR: Final = 0x9C9D
# The Exif IFD
_EXPOSURE_TIME: Final = 0x829A
_F_NUMBER: Final = 0x829D
_ISO: Final = 0x8827
_DATETIME_ORIGINAL: Final = 0x9003
_OFFSET_TIME: Final = 0x9010
_OFFSET_TIME_ORIGINAL: Final = 0x9011
_SUBSEC_ORIGINAL: Final = 0x9291
_FOCAL_LENGTH: Final = 0x920A
_LENS_MAKE: Final = 0xA433
_LENS_MODEL: Final = 0xA434
# The GPS IFD
_LATITUDE_REF: Final = 1
_LATITUDE: Final = 2
_LONGITUDE_REF: Final = 3
_LONGITUDE: Final = 4
_ALTITUDE_REF: Final = 5
_ALTITUDE: Final = 6

# Sensible ranges: a value outside is garbage (or a hostile file), not a photo's.
_MAX_ISO: Final = 10_000_000
_MAX_EXPOSURE_SECONDS: Final = 24 * 3600.0
_MAX_APERTURE: Final = 1000.0
_MAX_FOCAL_LENGTH_MM: Final = 100_000.0
_MAX_ALTITUDE_M: Final = 1_000_000.0
_DATE_RE: Final = re.compile(
    r"^\s*(\d{4})[:\-](\d{2})[:\-](\d{2})[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?\s*$"
)
_OFFSET_RE: Final = re.compile(r"^\s*([+-])(\d{2}):?(\d{2})\s*$")
_DIGITS_RE: Final = re.compile(r"^\s*(\d{1,9})\s*$")


def read(
    exif: Image.Exif, *, gps: bool, withheld: frozenset[int] = frozenset()
) -> PhotoMetadata | None:
    """The photo's metadata from its Exif; None when it says nothing usable.

    What the profile strips from the original is not recorded either: `gps` says whether
    it keeps the GPS position, `withheld` names the Exif tags it strips (Artist...).
    """
    ifd0: dict[int, Any] = _safely(lambda: _kept(exif.items(), withheld)) or {}
    sub: dict[int, Any] = _safely(lambda: _kept(exif.get_ifd(_EXIF_IFD).items(), withheld)) or {}
    metadata = PhotoMetadata(
        taken_at=_safely(lambda: _taken_at(ifd0, sub)),
        camera_make=_safely(lambda: _text(ifd0.get(_MAKE))),
        camera_model=_safely(lambda: _text(ifd0.get(_MODEL))),
        lens=_safely(lambda: _lens(sub)),
        iso=_safely(lambda: _iso(sub.get(_ISO))),
        exposure_time=_safely(lambda: _positive(sub.get(_EXPOSURE_TIME), _MAX_EXPOSURE_SECONDS)),
        aperture=_safely(lambda: _positive(sub.get(_F_NUMBER), _MAX_APERTURE)),
        focal_length=_safely(lambda: _positive(sub.get(_FOCAL_LENGTH), _MAX_FOCAL_LENGTH_MM)),
        artist=_safely(lambda: _text(ifd0.get(_ARTIST)) or _utf16(ifd0.get(_XP_AUTHOR))),
        copyright=_safely(lambda: _text(ifd0.get(_COPYRIGHT))),
        orientation=_safely(lambda: _orientation(ifd0.get(_ORIENTATION))),
        gps=_safely(lambda: _gps(dict(exif.get_ifd(_GPS_IFD)))) if gps else None,
    )
    return None if metadata.empty else metadata


def _kept(entries: Iterable[tuple[int, Any]], withheld: frozenset[int]) -> dict[int, Any]:
    return {tag: value for tag, value in entries if tag not in withheld}


def _safely(read_one: Callable[[], T | None]) -> T | None:
    """One field's value, or None when the file's value cannot be read as one."""
    try:
        return read_one()
    # Pillow's lazy IFD parsing and the conversions raise many kinds on garbage: any of
    # them means this one field is left out, which is the promise.
    except Exception:
        return None


# -- text -----------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    """A text field as Unicode, cleaned (control characters and padding gone), cut short."""
    if isinstance(value, tuple | list) and value:
        value = value[0]
    if isinstance(value, bytes):
        raw = value
    elif isinstance(value, str):
        try:
            raw = value.encode("latin-1")  # Pillow decoded the bytes as Latin-1
        except UnicodeEncodeError:
            raw = value.encode("utf-8")
    else:
        return None
    raw = raw.split(b"\x00", 1)[0]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return _clean(text)


def _utf16(value: Any) -> str | None:
    """Windows' XP fields: UTF-16LE bytes (Pillow gives a tuple of byte values or bytes)."""
    if isinstance(value, tuple):
        value = bytes(value)
    if not isinstance(value, bytes):
        return None
    return _clean(value.decode("utf-16-le", "replace").split("\x00", 1)[0])


def _clean(text: str) -> str | None:
    kept = "".join(
        " " if unicodedata.category(char) in ("Cc", "Zl", "Zp") else char
        for char in unicodedata.normalize("NFC", text)
        if unicodedata.category(char) not in ("Cs", "Co", "Cn")
    )
    kept = " ".join(kept.split())[:TEXT_MAX].strip()
    return kept or None


def _lens(sub: dict[int, Any]) -> str | None:
    model = _text(sub.get(_LENS_MODEL))
    make = _text(sub.get(_LENS_MAKE))
    if model and make and not model.lower().startswith(make.lower()):
        return f"{make} {model}"[:TEXT_MAX]
    return model


# -- numbers --------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, tuple | list):
        if not value:
            return None
        value = value[0]
    if isinstance(value, bool | str | bytes):
        return None
    number = float(value)  # an IFDRational with a zero denominator is NaN
    return number if math.isfinite(number) else None


def _positive(value: Any, most: float) -> float | None:
    number = _number(value)
    if number is None or not 0 < number <= most:
        return None
    return float(f"{number:.6g}")  # a rational's float noise is no information


def _iso(value: Any) -> int | None:
    number = _number(value)
    if number is None or not 0 < number <= _MAX_ISO:
        return None
    return round(number)


def _orientation(value: Any) -> int | None:
    number = _number(value)
    if number is None or number != int(number) or not 1 <= number <= 8:
        return None
    return int(number)


# -- time -----------------------------------------------------------------------------


def _taken_at(ifd0: dict[int, Any], sub: dict[int, Any]) -> datetime | None:
    """DateTimeOriginal (else IFD0's DateTime), with its sub-seconds and its UTC offset
    when the file gives one (OffsetTimeOriginal, else OffsetTime); naive otherwise."""
    original = _date(sub.get(_DATETIME_ORIGINAL))
    if original is not None:
        taken, offset = original, _offset(sub.get(_OFFSET_TIME_ORIGINAL))
        subsec = _subsec(sub.get(_SUBSEC_ORIGINAL))
        if subsec is not None and taken.microsecond == 0:
            taken = taken.replace(microsecond=subsec)
    else:
        modified = _date(ifd0.get(_DATETIME))
        if modified is None:
            return None
        taken, offset = modified, _offset(sub.get(_OFFSET_TIME))
    return taken.replace(tzinfo=offset) if offset is not None else taken


def _date(value: Any) -> datetime | None:
    text = _text(value)
    match = _DATE_RE.match(text) if text else None
    if match is None:
        return None  # absent, blank ("    :  :     :  :  ") or not a date
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction = match.group(7)
    microsecond = int(fraction[:6].ljust(6, "0")) if fraction else 0
    try:
        return datetime(year, month, day, hour, minute, second, microsecond)
    except ValueError:
        return None  # "0000:00:00 00:00:00", a 31st of February


def _offset(value: Any) -> timezone | None:
    text = _text(value)
    match = _OFFSET_RE.match(text) if text else None
    if match is None:
        return None
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    if delta > timedelta(hours=14) or int(minutes) >= 60:
        return None
    return timezone(-delta if sign == "-" else delta)


def _subsec(value: Any) -> int | None:
    text = _text(value)
    match = _DIGITS_RE.match(text) if text else None
    return int(match.group(1)[:6].ljust(6, "0")) if match else None


# -- GPS ------------------------------------------------------------------------------


def _gps(ifd: dict[int, Any]) -> Gps | None:
    latitude = _degrees(ifd.get(_LATITUDE), _text(ifd.get(_LATITUDE_REF)), "S", 90)
    longitude = _degrees(ifd.get(_LONGITUDE), _text(ifd.get(_LONGITUDE_REF)), "W", 180)
    if latitude is None or longitude is None:
        return None
    altitude = _number(ifd.get(_ALTITUDE))
    if altitude is not None:
        below = ifd.get(_ALTITUDE_REF) in (1, b"\x01")
        altitude = round(-altitude if below else altitude, 2)
        if abs(altitude) > _MAX_ALTITUDE_M:
            altitude = None
    return Gps(latitude=latitude, longitude=longitude, altitude=altitude)


def _degrees(value: Any, ref: str | None, negative: str, most: float) -> float | None:
    """Degrees, minutes and seconds (three rationals) as signed decimal degrees."""
    if not isinstance(value, tuple | list) or len(value) != 3:
        return None
    parts = [_number(part) for part in value]
    if any(part is None or part < 0 for part in parts):
        return None
    degrees, minutes, seconds = (float(part) for part in parts if part is not None)
    if minutes >= 60 or seconds >= 60:
        return None
    decimal = degrees + minutes / 60 + seconds / 3600
    if decimal > most:
        return None
    decimal = round(decimal, 7)  # about a centimetre
    return -decimal if ref is not None and ref.upper().startswith(negative) else decimal
