"""The image formats Emulsion accepts as originals, shared by the API (what a presigned
upload may declare) and the processors (what they decode), and the formats it writes.

Only formats a browser shows: everything else (SVG runs scripts, EPS/PDF run
interpreters, PSD/TIFF are large attack surfaces) is refused before a byte is stored.
"""

from __future__ import annotations

from typing import Final, Literal

# Pillow's format name -> the content type an upload of it declares.
ACCEPTED_FORMATS: Final[dict[str, str]] = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
}
AcceptedContentType = Literal["image/jpeg", "image/png", "image/webp", "image/gif"]
ACCEPTED_CONTENT_TYPES: Final = tuple(ACCEPTED_FORMATS.values())

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
