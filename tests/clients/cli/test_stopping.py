"""SIGTERM and Ctrl-C stop the CLI within seconds even while it is hashing files in its
discovery thread (a thread cannot be cancelled; asyncio waits for it on the way out)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from emulsion_cli.errors import EXIT_INTERRUPTED, EXIT_TERMINATED
from emulsion_devstack.processes import free_port
from tests.sigint import sigint_default

# Hashing this many bytes of a sparse file takes tens of seconds: far past the deadline.
SPARSE_BYTES = 64 * 1024**3


# Integration, not `make unit`: the CLI as a process, a stub server (see tests/conftest.py).
@pytest.mark.integration
@pytest.mark.parametrize(
    ("signum", "exit_code"), [(signal.SIGTERM, EXIT_TERMINATED), (signal.SIGINT, EXIT_INTERRUPTED)]
)
def test_a_signal_while_hashing_stops_within_seconds(
    tmp_path: Path, signum: int, exit_code: int
) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    with (photos / "huge.jpg").open("wb") as stream:
        stream.write(b"\xff\xd8\xff\xe0")
        stream.truncate(SPARSE_BYTES)
    process = subprocess.Popen(
        [sys.executable, "-m", "emulsion_cli", "ingest", str(photos), "-c", "c",
         "--progress", "lines", "--progress-interval", "0.05"],
        env={
            **os.environ,
            # Never contacted: discovery comes first.
            "EMULSION_API_URL": f"http://127.0.0.1:{free_port()}",
            "EMULSION_TOKEN": "t",
            "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "XDG_CONFIG_HOME": str(tmp_path / "config"),
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=sigint_default,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        # The reporter's first line comes once the run (and so the hashing) has begun.
        ready, _, _ = select.select([process.stderr], [], [], 30)
        assert ready, "the CLI printed no progress within 30 s"
        assert process.stderr.readline().strip() == "finding images"
        signalled = time.monotonic()
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=20)
        stopped_after = time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    assert process.returncode == exit_code, stderr
    assert stopped_after < 3, f"took {stopped_after:.1f} s to stop"
    assert "Run the same command again to resume" in stderr
