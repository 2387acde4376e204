"""Ctrl-C and SIGTERM stop a tool that started a stack, and the stack with it.

The stack's servers run in sessions of their own, so only the owning process can stop
them; these tests kill that process the way a user or CI does and then look for every
pid its state file named.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from emulsion_devstack.processes import ProcessRecord, stop_all, wait_for
from tests.sigint import sigint_default

REPO_ROOT = Path(__file__).resolve().parents[2]
# A stack has up to ten processes, stopped in three tiers in ~5 s; the bench may first spend
# up to ~16 s in boto's retries against a MinIO already gone. A deadline, not a wait.
STOPPED_WITHIN = 60.0


def state_with_endpoints(state_file: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads(state_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return state if "endpoints" in state else None


def first_state_under(root: Path, pattern: str) -> dict[str, Any] | None:
    for state_file in root.glob(pattern):
        state = state_with_endpoints(state_file)
        if state is not None:
            return state
    return None


def assert_signal_stops_everything(
    process: subprocess.Popen[bytes], state: dict[str, Any], signum: int
) -> None:
    records = [ProcessRecord(**raw) for raw in state["processes"]]
    assert records and all(r.alive() for r in records)
    process.send_signal(signum)
    try:
        wait_for(
            "every process of the stack to be gone",
            lambda: not [r.name for r in records if r.alive()],
            timeout=STOPPED_WITHIN,
        )
        process.wait(timeout=STOPPED_WITHIN)
    finally:
        # A failure here must not leave the stack running for the rest of the suite.
        stop_all(records, grace=5.0)
    assert not Path(state["data_dir"]).exists()


def while_running(process: subprocess.Popen[bytes], log: Path, check: Any) -> Any:
    """`check`, but fail at once (with the output) if the process has ended."""

    def checked() -> Any:
        if process.poll() is not None:
            raise AssertionError(f"exited {process.returncode}:\n{log.read_text()[-3000:]}")
        return check()

    return checked


def running(argv: list[str], tmp_path: Path, **env: str) -> subprocess.Popen[bytes]:
    """`argv` in the background, to be signalled: SIGINT at its default."""
    log = (tmp_path / "output.log").open("wb")
    return subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "TMPDIR": str(tmp_path / "tmp"), **env},
        preexec_fn=sigint_default,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_stops_the_bench_and_its_stack(tmp_path: Path, signum: int) -> None:
    (tmp_path / "tmp").mkdir()
    bench = running(
        [sys.executable, "-m", "emulsion_bench", "--images", "5", "--out", str(tmp_path)],
        tmp_path,
    )
    try:
        state = wait_for(
            "the bench's stack to be up",
            while_running(
                bench,
                tmp_path / "output.log",
                lambda: first_state_under(tmp_path / "tmp", "*/state.json"),
            ),
            timeout=300,
        )
        assert_signal_stops_everything(bench, state, signum)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()


PYTEST_SESSION = """
    import os
    from pathlib import Path

    from emulsion_devstack.processes import wait_for


    def test_holds_the_stack(stack, stack_state_dir):
        Path(os.environ["STACK_STATE_REPORT"]).write_text(str(stack_state_dir))
        wait_for("a signal", lambda: False, timeout=600)
"""


def test_sigterm_stops_a_pytest_session_and_its_stack(tmp_path: Path) -> None:
    (tmp_path / "tmp").mkdir()
    session = tmp_path / "session"
    session.mkdir()
    (session / "test_holding.py").write_text(textwrap.dedent(PYTEST_SESSION))
    report = tmp_path / "state-dir"
    pytest_run = running(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "conftest",  # the repository's stack fixtures, tests/conftest.py
            "--rootdir",
            str(session),
            "-c",
            os.devnull,
            str(session / "test_holding.py"),
        ],
        tmp_path,
        PYTHONPATH=str(REPO_ROOT / "tests"),
        STACK_STATE_REPORT=str(report),
    )
    try:
        state_dir = wait_for(
            "the session's stack to be up",
            while_running(
                pytest_run, tmp_path / "output.log", lambda: report.exists() and report.read_text()
            ),
            timeout=300,
        )
        state = state_with_endpoints(Path(state_dir) / "state.json")
        assert state is not None
        assert_signal_stops_everything(pytest_run, state, signal.SIGTERM)
    finally:
        if pytest_run.poll() is None:
            pytest_run.kill()
            pytest_run.wait()
