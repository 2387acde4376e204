"""The pure-Pillow limit: the processor's own `imaging.render`, on every core, no network.

The ceiling for Emulsion end to end on the same machine: the same images and styles
through the same code, minus S3, NATS and Kubernetes. The caller warms every source
first (so the page cache, not the disk, serves them, as MinIO's would); styles go to
a memory-backed directory, so disk speed does not count either. Each render's CPU time
is taken in the worker that ran it, so the render's CPU per image is known exactly.
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
    cpu_seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds

    @property
    def cpu_per_image(self) -> float:
        return self.cpu_seconds / self.images


def memory_dir() -> str | None:
    shm = Path("/dev/shm")  # noqa: S108 - mkdtemp makes a private directory inside it
    return str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None


def render_default(source: Path, out_dir: Path) -> int:
    """The processor's render of `source` with the default profile; styles written."""
    rendered = render(
        RenderJob(
            source=source,
            out_dir=out_dir,
            styles=DEFAULT_PROFILE.styles,
            format=DEFAULT_PROFILE.format,
            quality=DEFAULT_PROFILE.quality,
        )
    )
    return len(rendered.styles)


def _render_one(source: str) -> float:
    """Render `source`; the CPU seconds it took (one task at a time per pool process)."""
    out_dir = Path(tempfile.mkdtemp(prefix="emulsion-limit-", dir=memory_dir()))
    try:
        began = time.process_time()
        render_default(Path(source), out_dir)
        return time.process_time() - began
    finally:
        shutil.rmtree(out_dir, ignore_errors=True)


def measure(sources: list[Path], workers: int | None = None) -> LimitResult:
    workers = workers or len(os.sched_getaffinity(0))
    with ProcessPoolExecutor(workers) as pool:
        # Start the workers and import Pillow's codecs outside the measurement.
        list(pool.map(_render_one, [str(sources[0])] * workers))
        began = time.perf_counter()
        cpu = sum(pool.map(_render_one, [str(s) for s in sources], chunksize=2))
        seconds = time.perf_counter() - began
    return LimitResult(images=len(sources), seconds=seconds, workers=workers, cpu_seconds=cpu)
