"""The bench gallery's files, and warming them before a timed phase."""

from __future__ import annotations

from pathlib import Path

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp"})
CHUNK = 1 << 20


def images_in(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def warm(paths: list[Path]) -> int:
    """Read every file once, so each timed phase starts from the page cache, not the disk.

    Returns the bytes read (so callers can say how much was warmed).
    """
    total = 0
    for path in paths:
        with path.open("rb") as stream:
            while chunk := stream.read(CHUNK):
                total += len(chunk)
    return total
