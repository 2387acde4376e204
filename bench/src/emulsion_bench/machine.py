"""Which machine a benchmark ran on, and how loaded it was, for every report."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def cpu_model(cpuinfo: str) -> str:
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def memory_gib(meminfo: str) -> float:
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024 / 1024, 1)
    return 0.0


def usable_cores() -> int:
    return len(os.sched_getaffinity(0))


def describe() -> dict[str, Any]:
    import PIL

    return {
        "cpu": cpu_model(Path("/proc/cpuinfo").read_text()),
        "cores": usable_cores(),
        "memory_gib": memory_gib(Path("/proc/meminfo").read_text()),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pillow": str(PIL.__version__),
    }


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages, rounded for the report."""
    return [round(value, 2) for value in os.getloadavg()]


def headline(machine: dict[str, Any]) -> str:
    return f"{machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB"
