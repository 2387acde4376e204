"""Admission of renders by the memory their decode needs, against a budget.

Two large PNGs decoded at once can take more memory than the pod has (two 9,400²
RGBA PNGs peak at 2.16 GB; the chart's limit is 2 GiB) and the OOM killer then takes
every item in flight. A render starts only when its estimated peak fits in what is left
of the budget; the estimate is known from the image's header before anything is decoded.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from emulsion_contracts.reasons import FailureReason
from emulsion_processor.errors import ItemRejected

MIB: Final = 1024 * 1024
# The interpreter, its libraries, the I/O threads' buffers and the event loop: memory
# the process needs besides decoded images.
RESERVED_BYTES: Final = 384 * MIB
MINIMUM_BUDGET: Final = 256 * MIB
_CGROUP_ROOT: Final = Path("/sys/fs/cgroup")


def cgroup_memory_limit(proc_cgroup: Path = Path("/proc/self/cgroup")) -> int | None:
    """This process's cgroup memory limit (v2 `memory.max` or v1 `memory.limit_in_bytes`)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    candidates = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        relative = path.lstrip("/")
        if controllers == "":  # v2 unified hierarchy
            candidates += [_CGROUP_ROOT / relative / "memory.max", _CGROUP_ROOT / "memory.max"]
        elif "memory" in controllers.split(","):
            v1 = _CGROUP_ROOT / "memory"
            candidates += [v1 / relative / "memory.limit_in_bytes", v1 / "memory.limit_in_bytes"]
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for candidate in candidates:
        try:
            text = candidate.read_text().strip()
        except OSError:
            continue
        # "max" (v2) or a number near 2**63 (v1) mean no limit.
        if text.isdigit() and int(text) < physical:
            return int(text)
        return None
    return None


def default_budget() -> int:
    """The pod's memory limit (or the machine's memory) less what the process needs besides."""
    limit = cgroup_memory_limit()
    if limit is None:
        limit = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(MINIMUM_BUDGET, limit - RESERVED_BYTES)


@dataclass(slots=True)
class _Waiter:
    cost: int
    granted: asyncio.Future[None]


@dataclass(slots=True)
class MemoryBudget:
    """Bytes of decode memory in use, given out first come first served."""

    total: int
    used: int = 0
    _waiting: deque[_Waiter] = field(default_factory=deque)

    @asynccontextmanager
    async def admit(self, cost: int) -> AsyncIterator[None]:
        """Hold `cost` bytes of the budget while the block runs; wait until they are free."""
        if cost > self.total:
            raise ItemRejected(
                FailureReason.TOO_LARGE_FOR_MEMORY,
                f"decoding needs about {cost // MIB:,} MiB; this processor's whole memory "
                f"budget is {self.total // MIB:,} MiB",
            )
        if not self._waiting and self.used + cost <= self.total:
            self.used += cost
        else:
            # In order: a large image is not starved by a stream of small ones.
            waiter = _Waiter(cost, asyncio.get_running_loop().create_future())
            self._waiting.append(waiter)
            try:
                await waiter.granted
            except asyncio.CancelledError:
                if waiter.granted.done() and not waiter.granted.cancelled():
                    self._release(cost)
                else:
                    self._waiting.remove(waiter)
                    self._grant()
                raise
        try:
            yield
        finally:
            self._release(cost)

    def _release(self, cost: int) -> None:
        self.used -= cost
        self._grant()

    def _grant(self) -> None:
        while self._waiting and self.used + self._waiting[0].cost <= self.total:
            waiter = self._waiting.popleft()
            self.used += waiter.cost
            waiter.granted.set_result(None)
