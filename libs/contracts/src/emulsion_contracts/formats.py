"""The image formats Emulsion accepts as originals, shared by the API (what a presigned
upload may declare) and the processors (what they decode), and the formats it writes.

Only formats a browser shows or a phone takes: everything else (SVG runs scripts,
EPS/PDF run interpreters, PSD/TIFF are large attack surfaces) is refused before a byte
is stored. HEIF is what iPhones save by default (HEVC in a HEIF container, "HEIC");
AVIF is the same container with AV1 inside.
"""

from __future__ import annotations

from typing import Final, Literal

# Pillow's format name -> the content types an upload of it may declare. AVIF comes
# before HEIF: an AVIF file is a HEIF container too, and decoders are tried in this order.
ACCEPTED_FORMATS: Final[dict[str, tuple[str, ...]]] = {
    "JPEG": ("image/jpeg",),
    "PNG": ("image/png",),
    "WEBP": ("image/webp",),
    "GIF": ("image/gif",),
    "AVIF": ("image/avif",),
    # Browsers and phones say image/heic for HEVC-coded HEIF (every iPhone photo) and
    # image/heif for the container in general; the processor reads both the same way.
    "HEIF": ("image/heic", "image/heif"),
}
AcceptedContentType = Literal[
    "image/jpeg",
    "image/png",
    "image/webp",
    "image/gif",
    "image/avif",
    "image/heic",
    "image/heif",
]
ACCEPTED_CONTENT_TYPES: Final = tuple(t for types in ACCEPTED_FORMATS.values() for t in types)
# The accepted formats in words, for reasons and help texts.
ACCEPTED_IN_WORDS: Final = "JPEG, PNG, WebP, GIF, AVIF or HEIC/HEIF"

# What a derivative is encoded as (a style's or a profile's `format`).
OutputFormat = Literal["jpeg", "png", "webp"]
