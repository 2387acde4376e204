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

# What a derivative is encoded as (a style's or a profile's `format`).
OutputFormat = Literal["jpeg", "png", "webp"]
