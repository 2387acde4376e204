"""Progress for CI logs: a plain line every few seconds with files, MB, speed and ETA."""

from __future__ import annotations

import io

from emulsion_cli.progress import IngestProgress, LineReporter, Meter, duration
from emulsion_devstack.processes import wait_for


def test_a_line_has_files_megabytes_speed_and_eta() -> None:
    progress = IngestProgress(
        files=Meter(total=40, done=10, started=100.0),
        upload_bytes=Meter(total=120e6, done=30e6, started=100.0),
        items=Meter(total=40, done=4, started=105.0),
        processing=True,
    )
    assert progress.line(110.0) == (
        "upload 10/40 files, 30.0/120.0 MB, 3.0 MB/s, ETA 30s | process 4/40 images, 0.8/s, ETA 45s"
    )


def test_before_anything_is_done_speed_and_eta_are_unknown() -> None:
    progress = IngestProgress(files=Meter(total=3, started=1.0), upload_bytes=Meter(total=3e6))
    assert progress.line(2.0) == "upload 0/3 files, 0.0/3.0 MB, ? MB/s, ETA ?"
    assert IngestProgress().line(0.0) == "finding images"


def test_durations_read_like_a_clock() -> None:
    assert [duration(s) for s in (None, 0.4, 59, 61, 3600 + 120)] == [
        "?",
        "0s",
        "59s",
        "1m01s",
        "1h02m",
    ]


def test_lines_come_every_interval_and_once_at_the_end() -> None:
    stream = io.StringIO()
    with LineReporter(stream, interval=0.05) as reporter:
        reporter.uploads_planned(2, 2_000_000)
        reporter.uploaded(1_000_000)
        wait_for("two progress lines", lambda: stream.getvalue().count("\n") >= 2, 10)
        reporter.note("skipped x.txt: not an image")
    lines = stream.getvalue().splitlines()
    assert "skipped x.txt: not an image" in lines
    assert lines[-1].startswith("upload 1/2 files, 1.0/2.0 MB, ")
    assert all(line.startswith(("upload", "skipped")) for line in lines)
