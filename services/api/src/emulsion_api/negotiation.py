"""Which rendering of a style a request gets, from its `Accept` header (RFC 9110 12.5.1).

Each offered media type takes the quality of the most specific range that matches it
(`image/avif` over `image/*` over `*/*`); the highest quality wins, ties going to the
style's own order (its `formats`, first preferred), so a client that sends no `Accept`
(or an unreadable one) or `*/*` gets the first. One that accepts none of the renderings
(`Accept: image/png` of an AVIF/JPEG style) gets JPEG when the style has it, else the
first: an image URL answers with an image, never 406, as browsers expect. Pure functions,
so they are checked as properties.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

FALLBACK_TYPE: Final = "image/jpeg"
# A header longer than this is read no further (the rest is ignored, not an error).
ACCEPT_MAX: Final = 4096


@dataclass(frozen=True, slots=True)
class MediaRange:
    type: str
    subtype: str
    quality: float

    @property
    def specificity(self) -> int:
        return (self.type != "*") + (self.subtype != "*")

    def matches(self, media_type: str) -> bool:
        kind, _, subtype = media_type.partition("/")
        return self.type in ("*", kind) and self.subtype in ("*", subtype)


def parse_accept(header: str) -> list[MediaRange]:
    """The media ranges of an `Accept` value; malformed members are skipped."""
    ranges = []
    for member in header[:ACCEPT_MAX].split(","):
        media, *parameters = (part.strip() for part in member.split(";"))
        kind, slash, subtype = media.lower().partition("/")
        if not slash or not kind or not subtype or (kind == "*" and subtype != "*"):
            continue
        quality = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                quality = _quality(value.strip())
                break  # parameters after q are accept-extensions
        ranges.append(MediaRange(kind, subtype, quality))
    return ranges


def _quality(value: str) -> float:
    """A qvalue (0 to 1, up to three decimals); anything else counts as 1, as if absent."""
    try:
        quality = float(value)
    except ValueError:
        return 1.0
    return quality if 0.0 <= quality <= 1.0 else 1.0


def quality_of(media_type: str, ranges: Sequence[MediaRange]) -> float:
    """What `ranges` give `media_type`: the most specific matching range's quality (0 when
    none matches); among equally specific ranges, the highest."""
    matching = [media for media in ranges if media.matches(media_type)]
    if not matching:
        return 0.0
    best = max(media.specificity for media in matching)
    return max(media.quality for media in matching if media.specificity == best)


def choose(accept: str | None, offered: Sequence[str]) -> int:
    """The index in `offered` (media types, the style's order) that `accept` gets."""
    if not offered:
        raise ValueError("nothing offered")
    ranges = parse_accept(accept) if accept else []
    if not ranges:
        return 0
    qualities = [quality_of(media_type, ranges) for media_type in offered]
    best = max(qualities)
    if best > 0:
        return qualities.index(best)
    return offered.index(FALLBACK_TYPE) if FALLBACK_TYPE in offered else 0
