"""Ingest progress on stderr: bars on a terminal, a plain line every few seconds elsewhere.

A CI log or a redirected stream cannot redraw a bar; it gets lines like

    upload 12/40 files, 35.2/120.0 MB, 4.1 MB/s, ETA 21s | process 3/40 images, 1.2/s, ETA 31s

Both show speed and ETA, from the same `Meter`s.
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Final, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from emulsion_cli.output import printable

DEFAULT_INTERVAL_SECONDS: Final = 5.0


@dataclass
class Meter:
    """Done out of total since the first unit of work, for speed (average since then,
    steadier than an instantaneous rate) and ETA."""

    total: float = 0.0
    done: float = 0.0
    started: float | None = None

    def start(self, now: float) -> None:
        if self.started is None:
            self.started = now

    def rate(self, now: float) -> float | None:
        if self.started is None or self.done <= 0 or now <= self.started:
            return None
        return self.done / (now - self.started)

    def eta_seconds(self, now: float) -> float | None:
        rate = self.rate(now)
        if rate is None:
            return None
        return max(0.0, self.total - self.done) / rate


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    return f"{whole // 3600}h{whole % 3600 // 60:02d}m"


@dataclass
class IngestProgress:
    """The numbers both reporters show."""

    files: Meter = field(default_factory=Meter)
    upload_bytes: Meter = field(default_factory=Meter)
    items: Meter = field(default_factory=Meter)
    processing: bool = False

    def line(self, now: float) -> str:
        parts: list[str] = []
        if self.files.total or self.files.done:
            rate = self.upload_bytes.rate(now)
            speed = f"{rate / 1e6:,.1f} MB/s" if rate is not None else "? MB/s"
            parts.append(
                f"upload {self.files.done:.0f}/{self.files.total:.0f} files, "
                f"{self.upload_bytes.done / 1e6:,.1f}/{self.upload_bytes.total / 1e6:,.1f} MB, "
                f"{speed}, ETA {duration(self.upload_bytes.eta_seconds(now))}"
            )
        if self.processing:
            rate = self.items.rate(now)
            speed = f"{rate:,.1f}/s" if rate is not None else "?/s"
            parts.append(
                f"process {self.items.done:.0f}/{self.items.total:.0f} images, {speed}, "
                f"ETA {duration(self.items.eta_seconds(now))}"
            )
        return " | ".join(parts) or "finding images"


class LineReporter:
    """A plain line every `interval` seconds while the run goes on, and one at the end."""

    def __init__(
        self, stream: TextIO | None = None, interval: float = DEFAULT_INTERVAL_SECONDS
    ) -> None:
        self.stream = stream or sys.stderr
        self.interval = interval
        self.state = IngestProgress()
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._ticker = threading.Thread(target=self._tick, name="progress-lines", daemon=True)

    def __enter__(self) -> LineReporter:
        self._ticker.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._ticker.join()
        self._write(self.state.line(time.monotonic()))

    def _tick(self) -> None:
        while not self._stopped.wait(self.interval):
            self._write(self.state.line(time.monotonic()))

    def _write(self, line: str) -> None:
        with self._lock:
            self.stream.write(line + "\n")
            self.stream.flush()

    def note(self, message: str) -> None:
        self._write(printable(message))

    def uploads_planned(self, files: int, total_bytes: int) -> None:
        self.state.files.total += files
        self.state.upload_bytes.total += total_bytes
        if files:
            # Uploads begin right after they are planned: the speed counts from here.
            self.state.files.start(time.monotonic())
            self.state.upload_bytes.start(time.monotonic())

    def uploaded(self, size: int) -> None:
        self.state.files.done += 1
        self.state.upload_bytes.done += size

    def processing_planned(self, items: int) -> None:
        self.state.processing = items > 0
        self.state.items.total = items
        self.state.items.start(time.monotonic())

    def processed(self, done: int) -> None:
        self.state.items.done = done


class AmountColumn(ProgressColumn):
    """Files and MB for the upload bar, images for the processing bar."""

    def __init__(self) -> None:
        super().__init__()
        self._bytes = DownloadColumn()

    def render(self, task: Task) -> Text:
        if task.fields.get("unit") == "bytes":
            return Text(f"{task.fields['files']}  ") + self._bytes.render(task)
        return Text(f"{task.completed:.0f}/{task.total or 0:.0f} images", style="progress.download")


class SpeedColumn(ProgressColumn):
    """MB/s for the upload bar, images/s for the processing bar."""

    def __init__(self) -> None:
        super().__init__()
        self._bytes = TransferSpeedColumn()

    def render(self, task: Task) -> Text:
        if task.fields.get("unit") == "bytes":
            return self._bytes.render(task)
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.1f}/s" if speed else "?/s", style="progress.data.speed")


class RichReporter:
    """Two bars on stderr: upload (files, MB, MB/s, ETA), then processing (images/s, ETA)."""

    def __init__(self, console: Console) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<8}"),
            BarColumn(),
            AmountColumn(),
            SpeedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        self._upload: TaskID | None = None
        self._process: TaskID | None = None
        self._files = 0
        self._uploaded_files = 0
        self._total_bytes = 0

    def __enter__(self) -> RichReporter:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def note(self, message: str) -> None:
        self.progress.console.print(Text(printable(message), style="dim"))

    def _files_field(self) -> str:
        return f"{self._uploaded_files}/{self._files} files"

    def uploads_planned(self, files: int, total_bytes: int) -> None:
        self._files += files
        self._total_bytes += total_bytes
        if self._upload is None:
            self._upload = self.progress.add_task("upload", total=0, unit="bytes", files="")
        self.progress.update(self._upload, total=self._total_bytes, files=self._files_field())

    def uploaded(self, size: int) -> None:
        self._uploaded_files += 1
        if self._upload is not None:
            self.progress.update(self._upload, advance=size, files=self._files_field())

    def processing_planned(self, items: int) -> None:
        # Called again as batches are accepted, with the total known so far.
        if self._process is not None:
            self.progress.update(self._process, total=items)
        elif items > 0:
            self._process = self.progress.add_task("process", total=items, unit="images")

    def processed(self, done: int) -> None:
        if self._process is not None:
            self.progress.update(self._process, completed=done)
