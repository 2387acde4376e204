"""The performance targets, checked against one `make bench` run's results.

Each target reads the results document (see `__main__`); a target whose figure the run
did not produce (a phase skipped) is reported as not measured, never as met.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

SEED_IMAGES = 1361
SEED_SECONDS = 120.0
PROCESSOR_CPU_FACTOR = 1.2
SYSTEM_CPU_FACTOR = 2.0
NOTIFY_IDLE_P99_MS = 50.0
NOTIFY_BUSY_P99_MS = 250.0
NOTIFY_CLIENTS = 32
PROCESSOR_RSS_MB = 250.0
SERVICE_RSS_MB = 160.0
OTHER_SERVICES = ("api", "controller", "janitor")


@dataclass(frozen=True)
class Verdict:
    name: str
    target: str
    measured: str
    met: bool | None  # None: the run did not measure it

    def mark(self) -> str:
        return {True: "met", False: "MISSED", None: "not measured"}[self.met]


Figures = dict[str, Any]


def _seed_scenario(results: Figures) -> Verdict:
    emulsion = results["phases"]["emulsion"]
    rate = SEED_IMAGES / SEED_SECONDS
    measured = (
        f"{emulsion['images']} images in {emulsion['end_to_end_seconds']:.1f} s = "
        f"{emulsion['images_per_second']:.1f} images/s"
    )
    target = f"{SEED_IMAGES} images ≤ {SEED_SECONDS:.0f} s (≥ {rate:.1f} images/s)"
    if emulsion["images"] < SEED_IMAGES:
        # A smaller gallery never reaches the steady state the target is about.
        return Verdict("Seed scenario (end to end)", target, measured + "; not the seed's", None)
    return Verdict(
        "Seed scenario (end to end)",
        target,
        measured,
        emulsion["images_per_second"] >= rate and emulsion["failed"] == 0,
    )


def _render_cpu(results: Figures) -> float:
    return float(results["phases"]["limit"]["cpu_per_image_ms"])


def _processor_cpu(results: Figures) -> Verdict:
    render = _render_cpu(results)
    processor = results["phases"]["emulsion"]["processes"]["processor"]["cpu_per_image_ms"]
    return Verdict(
        "Processor efficiency",
        f"processor CPU/image ≤ {PROCESSOR_CPU_FACTOR}x render's ({render:.0f} ms)",
        f"{processor:.0f} ms = {processor / render:.2f}x",
        processor <= PROCESSOR_CPU_FACTOR * render,
    )


def _system_cpu(results: Figures) -> Verdict:
    render = _render_cpu(results)
    processes = results["phases"]["emulsion"]["processes"]
    total = sum(use["cpu_per_image_ms"] for use in processes.values())
    return Verdict(
        "Whole system",
        f"all processes' CPU/image ≤ {SYSTEM_CPU_FACTOR}x render's ({render:.0f} ms)",
        f"{total:.0f} ms = {total / render:.2f}x",
        total <= SYSTEM_CPU_FACTOR * render,
    )


def _notify(phase: str, label: str, limit_ms: float) -> Callable[[Figures], Verdict]:
    def check(results: Figures) -> Verdict:
        runs = results["phases"].get(phase, {}).get("runs", [])
        row = next((r for r in runs if r["clients"] == NOTIFY_CLIENTS), None)
        target = f"p99 ≤ {limit_ms:.0f} ms at {NOTIFY_CLIENTS} clients"
        if row is None:
            return Verdict(f"Notify, {label}", target, "—", None)
        measured = f"p99 {row['p99_ms']:.0f} ms ({row['errors']} errors)"
        if not row.get("gallery_running_at_end", True):
            # Not during a gallery after all: the figure says nothing about this target.
            measured += "; the gallery ended before the run did"
            return Verdict(f"Notify, {label}", target, measured, None)
        return Verdict(
            f"Notify, {label}", target, measured, row["p99_ms"] <= limit_ms and not row["errors"]
        )

    return check


def _memory(results: Figures) -> Verdict:
    processes = results["phases"]["emulsion"]["processes"]
    peaks = {name: processes[name]["peak_rss_mb"] for name in ("processor", *OTHER_SERVICES)}
    worst_other = max(OTHER_SERVICES, key=lambda name: peaks[name])
    return Verdict(
        "Memory (during the gallery)",
        f"processor ≤ {PROCESSOR_RSS_MB:.0f} MB, every other service ≤ {SERVICE_RSS_MB:.0f} MB",
        f"processor {peaks['processor']:.0f} MB, {worst_other} {peaks[worst_other]:.0f} MB",
        peaks["processor"] <= PROCESSOR_RSS_MB and peaks[worst_other] <= SERVICE_RSS_MB,
    )


def _against_fair(results: Figures) -> Verdict:
    emulsion = results["phases"]["emulsion"]["images_per_second"]
    fair = results["phases"].get("fair")
    if fair is None:
        return Verdict("Against the fair baseline", "≥ 1.0x its throughput", "—", None)
    ratio = emulsion / fair["images_per_second"]
    return Verdict(
        "Against the fair baseline",
        "Emulsion ≥ 1.0x the fair synchronous baseline's images/s",
        f"{emulsion:.1f} vs {fair['images_per_second']:.1f} images/s = {ratio:.2f}x",
        ratio >= 1.0,
    )


CHECKS: tuple[Callable[[Figures], Verdict], ...] = (
    _seed_scenario,
    _processor_cpu,
    _system_cpu,
    _notify("notify_idle", "idle stack", NOTIFY_IDLE_P99_MS),
    _notify("notify_gallery", "during a gallery", NOTIFY_BUSY_P99_MS),
    _memory,
    _against_fair,
)


def evaluate(results: Figures) -> list[dict[str, Any]]:
    return [asdict(check(results)) for check in CHECKS]
