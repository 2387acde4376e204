"""Compressed index ranges, as batch/v1 Indexed Jobs write them: "0-3,7,9-11".

The controller writes them into IngestJob status; the API expands them into per-item
state. Both go through these two functions.
"""

from __future__ import annotations

from collections.abc import Iterable


def compress(indexes: Iterable[int]) -> str:
    ordered = sorted(set(indexes))
    if not ordered:
        return ""
    runs: list[str] = []
    start = previous = ordered[0]
    for index in ordered[1:]:
        if index != previous + 1:
            runs.append(_run(start, previous))
            start = index
        previous = index
    runs.append(_run(start, previous))
    return ",".join(runs)


def _run(start: int, end: int) -> str:
    return str(start) if start == end else f"{start}-{end}"


def expand(ranges: str | None) -> set[int]:
    """The indexes in `ranges`; raises ValueError on anything that is not a range list."""
    result: set[int] = set()
    for part in (ranges or "").split(","):
        if not part:
            continue
        first, _, last = part.partition("-")
        start, end = int(first), int(last or first)
        if start < 0 or end < start:
            raise ValueError(f"bad index range {part!r}")
        result.update(range(start, end + 1))
    return result
