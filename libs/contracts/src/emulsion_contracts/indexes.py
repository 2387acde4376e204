"""Compressed index ranges, as batch/v1 Indexed Jobs write them: "0-3,7,9-11".

The controller writes them into IngestJob status; the API expands them into per-item
state. Both go through these two functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from emulsion_contracts.crd import MAX_ITEMS

# Every index of a job is below the most items a job has.
DEFAULT_LIMIT: Final = MAX_ITEMS
_RANGE_RE: Final = re.compile(r"([0-9]{1,12})(?:-([0-9]{1,12}))?")
# The longest range list the IngestJob CRD stores (status.succeededIndexes maxLength).
MAX_RANGES_LENGTH: Final = 16384


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


def expand(ranges: str | None, limit: int = DEFAULT_LIMIT) -> set[int]:
    """The indexes in `ranges`, each below `limit`; raises ValueError on anything that is
    not such a range list, before allocating for it (a hostile "0-999999999" is refused,
    not expanded)."""
    text = ranges or ""
    if len(text) > MAX_RANGES_LENGTH:
        raise ValueError(f"index ranges of {len(text)} characters; at most {MAX_RANGES_LENGTH}")
    result: set[int] = set()
    for part in text.split(","):
        if not part:
            continue
        matched = _RANGE_RE.fullmatch(part)
        if matched is None:
            raise ValueError(f"bad index range {part[:40]!r}")
        first, last = matched.groups()
        start, end = int(first), int(last or first)
        if end < start:
            raise ValueError(f"bad index range {part!r}")
        if end >= limit:
            raise ValueError(f"index range {part!r} goes past the {limit} items of a job")
        result.update(range(start, end + 1))
    return result
