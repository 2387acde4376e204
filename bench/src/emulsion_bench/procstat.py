"""What the kernel knows about a process, read from /proc: CPU time, resident memory,
children. The one reader every benchmark uses.

CPU time is user + system, including the children a process has waited for (`cutime`,
`cstime`): a worker process that exits between two readings is then still counted, in
its parent. Peak memory is the kernel's own high-water mark of the resident set
(`VmHWM`), which can be reset per process (`clear_refs`), so every phase of a benchmark
reads the peak of that phase alone.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Stat:
    """The fields of /proc/<pid>/stat a benchmark needs (times in clock ticks)."""

    state: str
    ppid: int
    utime: int
    stime: int
    cutime: int
    cstime: int

    @property
    def cpu_ticks(self) -> int:
        """Own user + system time plus that of children it has reaped."""
        return self.utime + self.stime + self.cutime + self.cstime


def parse_stat(text: str) -> Stat:
    # The command name (field 2) is in parentheses and may hold spaces or ')'; every
    # field after the last ')' is a number or a state letter at a fixed position.
    fields = text.rsplit(")", 1)[1].split()
    return Stat(
        state=fields[0],
        ppid=int(fields[1]),
        utime=int(fields[11]),
        stime=int(fields[12]),
        cutime=int(fields[13]),
        cstime=int(fields[14]),
    )


def parse_status_kib(text: str, name: str) -> int | None:
    """A `kB` line of /proc/<pid>/status (`VmHWM`, `VmRSS`) in KiB, None if absent."""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == name:
            return int(value.split()[0])
    return None


def read_stat(pid: int) -> Stat | None:
    try:
        return parse_stat((PROC / str(pid) / "stat").read_text())
    except (OSError, IndexError, ValueError):
        return None  # gone, or a zombie being torn down


def cpu_seconds(pid: int) -> float:
    stat = read_stat(pid)
    return stat.cpu_ticks / CLOCK_TICKS if stat else 0.0


def _status_mb(pid: int, name: str) -> float:
    """A status field in MB (10^6 bytes, as the targets are written), 0 if it is gone."""
    try:
        kib = parse_status_kib((PROC / str(pid) / "status").read_text(), name)
    except OSError:
        return 0.0
    return (kib or 0) * 1024 / 1e6


def peak_rss_mb(pid: int) -> float:
    """VmHWM: the high-water mark of the resident set since start or the last reset."""
    return _status_mb(pid, "VmHWM")


def rss_mb(pid: int) -> float:
    return _status_mb(pid, "VmRSS")


def reset_peak_rss(pid: int) -> bool:
    """Restart `pid`'s VmHWM from its current RSS (Linux ≥ 4.0, for processes we own)."""
    try:
        (PROC / str(pid) / "clear_refs").write_text("5")
    except OSError:
        return False
    return True


def children_by_parent(stats: Mapping[int, Stat]) -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        tree.setdefault(stat.ppid, []).append(pid)
    return tree


def descendants_in(
    tree: Mapping[int, list[int]], pid: int, apart: Collection[int] = ()
) -> list[int]:
    """`pid`'s descendants, leaving out the subtrees of the processes `apart` (metered
    on their own: the stack's servers are children of the bench that started them)."""
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in tree.get(pending.pop(), []):
            if child not in apart:
                found.append(child)
                pending.append(child)
    return sorted(found)


def all_stats() -> dict[int, Stat]:
    stats = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                stats[int(entry.name)] = stat
    return stats


def descendants(pid: int) -> list[int]:
    return descendants_in(children_by_parent(all_stats()), pid)


def tree_cpu_ticks(stats: Mapping[int, Stat], pid: int, apart: Collection[int] = ()) -> int:
    """CPU of `pid` and every live descendant (but those `apart`), plus the descendants
    that have been reaped."""
    members = [pid, *descendants_in(children_by_parent(stats), pid, apart)]
    return sum(stats[member].cpu_ticks for member in members if member in stats)


@dataclass
class PhaseMeter:
    """CPU seconds and peak RSS of named process trees over one phase of a benchmark.

    Each tree is a root and its descendants, except other roots and theirs.
    `start()` reads every tree's CPU and resets its peak RSS; `stop()` returns, per name,
    the CPU spent since and the phase's peak RSS (the sum of the members' peaks: an upper
    bound on the tree's peak, exact for a single process). A difference of tree totals
    stays right when a child exits in between, because its parent then holds its time.
    """

    roots: Mapping[str, int]
    began: dict[str, int] = field(default_factory=dict)

    def start(self) -> None:
        stats = all_stats()
        tree = children_by_parent(stats)
        apart = set(self.roots.values())
        self.began = {name: tree_cpu_ticks(stats, pid, apart) for name, pid in self.roots.items()}
        for pid in self.roots.values():
            for member in (pid, *descendants_in(tree, pid, apart)):
                reset_peak_rss(member)

    def stop(self) -> dict[str, ProcessUse]:
        stats = all_stats()
        tree = children_by_parent(stats)
        apart = set(self.roots.values())
        used = {}
        for name, pid in self.roots.items():
            ticks = tree_cpu_ticks(stats, pid, apart) - self.began.get(name, 0)
            members: Iterable[int] = (pid, *descendants_in(tree, pid, apart))
            used[name] = ProcessUse(
                cpu_seconds=max(ticks, 0) / CLOCK_TICKS,
                peak_rss_mb=sum(peak_rss_mb(member) for member in members),
            )
        return used


@dataclass(frozen=True)
class ProcessUse:
    cpu_seconds: float
    peak_rss_mb: float


def cpu_per_item(used: Mapping[str, ProcessUse], items: int) -> dict[str, float]:
    """CPU seconds per item of each process, and their sum under "total"."""
    per_item = {name: use.cpu_seconds / items for name, use in used.items()} if items else {}
    per_item["total"] = sum(per_item.values())
    return per_item


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of `pid` and its descendants, live and reaped."""
    return tree_cpu_ticks(all_stats(), pid) / CLOCK_TICKS
