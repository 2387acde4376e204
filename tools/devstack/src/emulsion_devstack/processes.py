"""Start, watch and stop the stack's server processes, identified by pid and start time.

A pid alone can be reused by an unrelated process after ours exits, so every record
also keeps the process's start time from /proc and nothing is signalled unless both
still match.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class StackError(RuntimeError):
    """A component failed to start or to become ready; the message carries its log tail."""


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    start_time: int
    log: str
    # How it was started (the variables beyond the inherited environment), so the stack
    # can start it again on the same ports and data after a kill or a stop.
    argv: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None

    def to_json(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ProcessRecord:
        return cls(**{**raw, "argv": tuple(raw.get("argv", ())), "env": dict(raw.get("env", {}))})

    def alive(self) -> bool:
        return process_start_time(self.pid) == self.start_time


def process_start_time(pid: int) -> int | None:
    """The kernel's start time of `pid` (clock ticks since boot), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may contain spaces; fields after it are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def tcp_open(host: str, port: int) -> bool:
    """Something accepts connections on host:port (raises OSError if nothing does)."""
    with socket.create_connection((host, port), timeout=1):
        return True


def run(command: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a short command to its end; with `check`, its failure is a StackError."""
    result = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise StackError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}")
    return result


def print_status(
    records: Sequence[ProcessRecord], width: int, running: Callable[[], object], absent: str
) -> int:
    """`status`: each process's name, pid and whether it is up, one line each (`absent`
    where there are none); its exit status, 0 when `running()` says they all run."""
    if not records:
        print(absent)
        return 1
    for record in records:
        print(f"  {record.name:<{width}} pid {record.pid:<8} {'up' if record.alive() else 'DOWN'}")
    return 0 if running() else 1


def print_stopped(stopped: Sequence[str], template: str, nothing: str) -> int:
    """`down`: what it stopped (their names, comma-separated, in `template`'s `{}`), or
    `nothing` where nothing was running; its exit status, 0."""
    print(template.format(", ".join(stopped)) if stopped else nothing)
    return 0


def command_failed(target: str, error: StackError) -> int:
    """`make <target>` failed: say why on stderr; its exit status."""
    print(f"make {target} failed: {error}", file=sys.stderr)
    return 1


def log_tail(path: Path | str, lines: int = 30) -> str:
    try:
        content = Path(path).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(content[-lines:]) or "(log is empty)"


def spawn(
    name: str,
    argv: Sequence[str],
    log: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ProcessRecord:
    """Start `argv` in its own session, so it outlives `make up` and ignores the terminal."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        process = subprocess.Popen(
            list(argv),
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
            start_new_session=True,
        )
    start_time = process_start_time(process.pid)
    if start_time is None:
        raise StackError(f"{name} exited at once:\n{log_tail(log)}")
    return ProcessRecord(
        name,
        process.pid,
        start_time,
        str(log),
        argv=tuple(argv),
        env=dict(env or {}),
        cwd=None if cwd is None else str(cwd),
    )


def respawn(record: ProcessRecord) -> ProcessRecord:
    """Start `record`'s command again, as it was first started, appending to its log."""
    if not record.argv:
        raise StackError(f"{record.name} was recorded without its command; it cannot be restarted")
    cwd = None if record.cwd is None else Path(record.cwd)
    return spawn(record.name, record.argv, Path(record.log), record.env, cwd)


def kill(record: ProcessRecord, signum: int = signal.SIGKILL, timeout: float = 15.0) -> None:
    """Send `signum` to the process's group (no grace); unless it only freezes or thaws
    the process (SIGSTOP, SIGCONT), wait until the process is gone."""
    if not record.alive():
        _reap(record.pid)
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(record.pid, signum)
    if signum in (signal.SIGSTOP, signal.SIGCONT):
        return
    deadline = time.monotonic() + timeout
    while record.alive():
        _reap(record.pid)
        if time.monotonic() > deadline:
            raise StackError(f"{record.name} (pid {record.pid}) outlived signal {signum}")
        time.sleep(0.02)
    _reap(record.pid)


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 60.0) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last saw {last!r}")


async def until(what: str, check: Callable[[], Awaitable[T | None]], within: float = 60.0) -> T:
    """`wait_for` inside an event loop: await `check` until it returns something truthy."""
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}; last saw {last!r}")


async def wait_for_async(what: str, check: Callable[[], T | None], within: float = 60.0) -> T:
    """`wait_for` inside an event loop: the blocking `check` runs in a worker thread, so
    the loop goes on serving what the check waits for."""

    async def in_thread() -> T | None:
        return await asyncio.to_thread(check)

    return await until(what, in_thread, within)


def wait_until(
    record: ProcessRecord, ready: Callable[[], bool], timeout: float, what: str = "ready"
) -> None:
    """Poll `ready` until it holds; fail at once if the process dies, or at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        if not record.alive():
            _reap(record.pid)
            raise StackError(f"{record.name} exited before it was {what}:\n{log_tail(record.log)}")
        with contextlib.suppress(Exception):
            if ready():
                return
        if time.monotonic() > deadline:
            # Nobody else holds this process yet, so nobody else would ever stop it.
            stop(record)
            raise StackError(
                f"{record.name} was not {what} after {timeout:.0f}s:\n{log_tail(record.log)}"
            )
        time.sleep(0.1)


def stop(record: ProcessRecord, grace: float = 15.0) -> None:
    """SIGTERM the process's group, then SIGKILL whatever is left after `grace` seconds."""
    stop_all([record], grace)


def stop_all(records: Sequence[ProcessRecord], grace: float = 15.0) -> None:
    """Stop several process groups at once: one grace period for all, not one each.

    Each record leads its own session (`spawn`), so its group holds every child it
    started (a processor's worker processes, say) and they are stopped with it.
    """
    alive = [r for r in records if r.alive()]
    for record in records:
        _reap(record.pid)
    for record in alive:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _still_alive(alive) and time.monotonic() < deadline:
        time.sleep(0.05)
    for record in _still_alive(alive):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(record.pid, signal.SIGKILL)
    while _still_alive(alive):
        time.sleep(0.05)


def _still_alive(records: Sequence[ProcessRecord]) -> list[ProcessRecord]:
    for record in records:
        _reap(record.pid)
    return [r for r in records if r.alive()]


def _reap(pid: int) -> None:
    # Our own children stay zombies until waited for; others' are not ours to reap.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)
