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

# What a derivative is encoded as (a style's or a profile's `format`, or each of a style's
# `formats`).
OutputFormat = Literal["jpeg", "png", "webp", "avif"]
OUTPUT_FORMATS: Final[tuple[OutputFormat, ...]] = ("jpeg", "png", "webp", "avif")
# The media type each output format is served as (and negotiated by, through `Accept`).
OUTPUT_CONTENT_TYPES: Final[dict[str, str]] = {
    "jpeg": "image/jpeg",
    "png": "image/png",
    "webp": "image/webp",
    "avif": "image/avif",
}
# The encoder quality that matches JPEG at the profile's default quality (82) in mean SSIM
# over the default styles of 24 demo-gallery images (`make bench-formats`,
# bench/results/2026-12-07-formats-speed9.md): what a style that lists several formats
# encodes WebP and AVIF at unless its `qualities` say otherwise.
EQUAL_QUALITY: Final[dict[str, int]] = {"webp": 81, "avif": 67}
# The AVIF encoder's speed (libavif, 0 slowest .. 10 fastest): the slowest of 6, 8, 9, 10
# (bench/results/2026-12-07-formats.md) whose `[avif, jpeg]` styles keep the processor's
# render CPU per image within 1.5x of JPEG alone (measured 1.42x; speed 8: 1.81x).
AVIF_SPEED: Final = 9
