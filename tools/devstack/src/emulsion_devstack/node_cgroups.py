"""The real node's cgroups: `/emulsion-node` in each cgroup v1 hierarchy (and in cgroup2),
with `runtime` below it where containerd and kubelet start; every process that lands in
them (containerd's shims, the containers) is found, and killed, through them."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from emulsion_devstack.processes import StackError

CGROUP_NAME = "emulsion-node"


def hierarchies() -> list[Path]:
    """Mount points of the host's cgroup hierarchies (one per v1 controller set)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        separator = fields.index("-")
        # cgroup2 too: on this hybrid layout it has no controllers, but kubelet and
        # runc still make their groups in it.
        if fields[separator + 1] in ("cgroup", "cgroup2"):
            found.append(Path(fields[4]))
    return found


def existing() -> list[str]:
    """The node's cgroups that exist now, one per hierarchy."""
    return sorted(str(h / CGROUP_NAME) for h in hierarchies() if (h / CGROUP_NAME).exists())


def make() -> None:
    for hierarchy in hierarchies():
        for sub in ("", "runtime"):
            path = hierarchy / CGROUP_NAME / sub
            path.mkdir(exist_ok=True)
            if hierarchy.name == "cpuset":
                # v1 cpuset: a child has no CPUs or memory nodes until given its
                # parent's, and takes no tasks before that.
                for knob in ("cpuset.cpus", "cpuset.mems"):
                    (path / knob).write_text((path.parent / knob).read_text())


def in_cgroup(argv: list[str]) -> list[str]:
    """Wrap `argv` so it starts inside the node's runtime cgroup in every hierarchy:
    whatever it starts (containerd's shims) is found and stopped through the cgroup."""
    targets = " ".join(str(h / CGROUP_NAME / "runtime" / "cgroup.procs") for h in hierarchies())
    script = f'for f in {targets}; do echo $$ > "$f"; done; exec "$@"'
    return ["sh", "-c", script, "sh", *argv]


def _walk(root: Path) -> Iterator[Path]:
    """`root` and its descendants, deepest first."""
    if not root.is_dir():
        return
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        yield from _walk(child)
    yield root


def _pids() -> set[int]:
    pids: set[int] = set()
    for hierarchy in hierarchies():
        for group in _walk(hierarchy / CGROUP_NAME):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in (group / "cgroup.procs").read_text().split())
    return pids


def kill_all(timeout: float = 30.0) -> None:
    """SIGKILL every process in the node's cgroups until none is left: the containers,
    containerd's shims, and whatever else the node started."""
    deadline = time.monotonic() + timeout
    while pids := _pids():
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        if time.monotonic() > deadline:
            raise StackError(f"processes {sorted(pids)} outlived SIGKILL in the node's cgroups")
        time.sleep(0.1)


def remove(timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for hierarchy in hierarchies():
        for group in _walk(hierarchy / CGROUP_NAME):
            while True:
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    # A process just killed may take a moment to leave the cgroup.
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
