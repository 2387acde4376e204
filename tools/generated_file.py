"""What the generator scripts beside this file share: the file each makes is written, or
with `--check` only compared, failing (exit 1, saying how to make it again) when stale."""

from __future__ import annotations

import sys
from pathlib import Path


def write_or_check(path: Path, wanted: str, check: bool, remake: str) -> int:
    """Write `wanted` to `path`; with `check`, 1 (and `remake` said) if it differs, else 0."""
    if check:
        current = path.read_text() if path.exists() else ""
        if current != wanted:
            print(f"{path} is stale: run {remake}", file=sys.stderr)
            return 1
        return 0
    path.write_text(wanted)
    return 0
