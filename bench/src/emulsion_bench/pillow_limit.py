"""The pure-Pillow limit: the processor's own render, on every core, with no network.

This is the ceiling for Emulsion end to end on the same machine: the same images and
styles through the same code, minus S3, NATS and Kubernetes. Sources are read from the
local gallery (the page cache after the first pass) and styles are written to a
memory-backed directory, so disk speed does not count either.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from emulsion_contracts.profiles import DEFAULT_PROFILE
from emulsion_processor.imaging import RenderJob, render


@dataclass(frozen=True)
class LimitResult:
    images: int
    seconds: float
    workers: int

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds


def _scratch_root() -> str | None:
    shm = Path("/dev/shm")  # noqa: S108 - mkdtemp makes a private directory inside it
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def _render_one(source: str) -> int:
    out_dir = Path(tempfile.mkdtemp(prefix="emulsion-limit-", dir=_scratch_root()))
    try:
        rendered = render(
            RenderJob(
                source=Path(source),
                out_dir=out_dir,
                styles=DEFAULT_PROFILE.styles,
                format=DEFAULT_PROFILE.format,
                quality=DEFAULT_PROFILE.quality,
            )
        )
        return len(rendered.styles)
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def measure(sources: list[Path], workers: int | None = None) -> LimitResult:
    workers = workers or os.cpu_count() or 1
    with ProcessPoolExecutor(workers) as pool:
        # Warm the pool (imports, first decode) outside the measurement.
        list(pool.map(_render_one, [str(sources[0])] * workers))
        began = time.perf_counter()
        list(pool.map(_render_one, [str(s) for s in sources], chunksize=4))
        seconds = time.perf_counter() - began
    return LimitResult(images=len(sources), seconds=seconds, workers=workers)
