"""The figures of `make bench-fairness`, from recorded times alone (no stack, no I/O).

- `steady_rate`: a bulk import's images/s between its 10th and 90th percent result, so
  the upload's ramp at the head and the last job's tail do not decide it;
- `latency_summary`: the single photos' notify -> Succeeded p50/p95/max (nearest rank,
  `stats.percentile`);
- `shares`: each bulk tenant's share of the results per bucket of time, over the buckets
  after the first `skip` seconds and before the first tenant ran out of work; the
  deviation of a share is relative to an equal share (0.10: 10 % above 1/n);
- `evaluate`: the three targets, met or missed (the import's rate: at most 5 % slower
  beside the singles than alone; faster is noise, not harm);
- `queue_sample`, `queue_peaks`: the controller's queue gauges (depth and the oldest
  waiting item's age per lane, `emulsion_queue_*`) read from its /metrics, and their
  peaks over a phase;
- `markdown`: the report.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final

from prometheus_client.parser import text_string_to_metric_families

from emulsion_bench.stats import percentile

# The targets: the single photo's p95 while a bulk import runs, the import's rate with
# the singles beside it (relative to its rate alone), each bulk tenant's share.
SINGLE_P95_SECONDS: Final = 3.0
BULK_RATE_TOLERANCE: Final = 0.05
SHARE_TOLERANCE: Final = 0.10


def steady_rate(times: Sequence[float], low: float = 0.10, high: float = 0.90) -> float:
    """Results per second between the `low` and `high` fractions of `times` (result
    times in seconds, any order); 0.0 with fewer than two results in that span."""
    ordered = sorted(times)
    if len(ordered) < 2:
        return 0.0
    first = max(0, math.ceil(low * len(ordered)) - 1)
    last = min(len(ordered) - 1, max(first, math.ceil(high * len(ordered)) - 1))
    span = ordered[last] - ordered[first]
    if last == first or span <= 0:
        return 0.0
    return (last - first) / span


@dataclass(frozen=True)
class LatencySummary:
    count: int
    p50_seconds: float
    p95_seconds: float
    max_seconds: float


def latency_summary(seconds: Sequence[float]) -> LatencySummary | None:
    if not seconds:
        return None
    return LatencySummary(
        count=len(seconds),
        p50_seconds=percentile(seconds, 50),
        p95_seconds=percentile(seconds, 95),
        max_seconds=max(seconds),
    )


@dataclass(frozen=True)
class ShareFigures:
    tenants: list[str]
    bucket_seconds: float
    skip_seconds: float
    # Buckets counted: [start, end) in seconds from the start, results per tenant.
    buckets: list[dict[str, Any]]
    # The largest |share x n - 1| over the counted buckets and tenants; None: no bucket.
    max_deviation: float | None
    # Each tenant's share of all results in the counted buckets.
    overall: dict[str, float]
    # When the first tenant's last result came (seconds from the start).
    first_done_seconds: float | None


def shares(
    results: Sequence[tuple[float, str]],
    tenants: Sequence[str],
    bucket_seconds: float = 10.0,
    skip_seconds: float = 60.0,
) -> ShareFigures:
    """`results`: (seconds from the start, tenant) of every result. A bucket counts when
    it starts at or after `skip_seconds` and ends at or before the first tenant's last
    result (until then every tenant had work waiting), and holds at least one result."""
    if bucket_seconds <= 0:
        raise ValueError("bucket_seconds must be > 0")
    last: dict[str, float] = {}
    for moment, tenant in results:
        if tenant in tenants:
            last[tenant] = max(last.get(tenant, moment), moment)
    first_done = min(last.values()) if len(last) == len(tenants) and tenants else None
    end = first_done if first_done is not None else 0.0
    counts: dict[int, dict[str, int]] = {}
    for moment, tenant in results:
        if tenant not in tenants:
            continue
        number = int(moment // bucket_seconds)
        counts.setdefault(number, dict.fromkeys(tenants, 0))[tenant] += 1
    buckets = []
    totals = dict.fromkeys(tenants, 0)
    deviations = []
    for number in sorted(counts):
        start, stop = number * bucket_seconds, (number + 1) * bucket_seconds
        if start < skip_seconds or stop > end:
            continue
        row = counts[number]
        total = sum(row.values())
        bucket_shares = {t: row[t] / total for t in tenants}
        deviations += [abs(share * len(tenants) - 1) for share in bucket_shares.values()]
        for tenant in tenants:
            totals[tenant] += row[tenant]
        buckets.append({"start": start, "end": stop, "results": dict(row), "shares": bucket_shares})
    everything = sum(totals.values())
    return ShareFigures(
        tenants=list(tenants),
        bucket_seconds=bucket_seconds,
        skip_seconds=skip_seconds,
        buckets=buckets,
        max_deviation=max(deviations) if deviations else None,
        overall={t: totals[t] / everything for t in tenants} if everything else {},
        first_done_seconds=first_done,
    )


def share_figures(figures: ShareFigures) -> dict[str, Any]:
    return asdict(figures)


QUEUE_DEPTH: Final = "emulsion_queue_depth"
QUEUE_OLDEST_AGE: Final = "emulsion_queue_oldest_age_seconds"


def queue_sample(text: str) -> dict[str, dict[str, float]]:
    """Per lane, the waiting items over all tenants and the oldest one's age, from a
    /metrics page; empty when the controller exports no queue gauges."""
    lanes: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        if family.name not in (QUEUE_DEPTH, QUEUE_OLDEST_AGE):
            continue
        for sample in family.samples:
            row = lanes.setdefault(sample.labels.get("lane", "?"), {"depth": 0.0, "age": 0.0})
            if family.name == QUEUE_DEPTH:
                row["depth"] += sample.value
            else:
                row["age"] = max(row["age"], sample.value)
    return lanes


def queue_peaks(
    samples: Sequence[tuple[float, Mapping[str, Mapping[str, float]]]], start: float, end: float
) -> dict[str, dict[str, float]]:
    """Per lane, the largest depth and oldest age among the samples taken in [start, end]."""
    peaks: dict[str, dict[str, float]] = {}
    for moment, lanes in samples:
        if not start <= moment <= end:
            continue
        for lane, row in lanes.items():
            peak = peaks.setdefault(lane, {"depth": 0.0, "age": 0.0})
            peak["depth"] = max(peak["depth"], row["depth"])
            peak["age"] = max(peak["age"], row["age"])
    return peaks


@dataclass(frozen=True)
class Target:
    name: str
    target: str
    value: str
    met: bool | None  # None: not measured


def evaluate(mode: Mapping[str, Any]) -> list[Target]:
    """The targets over one lanes setting's figures (`run_mode`'s dict)."""
    found: list[Target] = []
    single = mode.get("with_singles", {}).get("singles", {}).get("summary")
    found.append(
        Target(
            "single photo notify -> Succeeded p95",
            f"<= {SINGLE_P95_SECONDS:g} s",
            f"{single['p95_seconds']:.2f} s" if single else "not measured",
            single["p95_seconds"] <= SINGLE_P95_SECONDS if single else None,
        )
    )
    alone = mode.get("alone", {}).get("images_per_second")
    beside = mode.get("with_singles", {}).get("images_per_second")
    if alone and beside:
        change = beside / alone - 1
        # A faster import beside the singles is noise, not harm: only a slowdown counts.
        found.append(
            Target(
                "bulk import's rate with the singles vs alone",
                f"at most {BULK_RATE_TOLERANCE:.0%} slower",
                f"{beside:.1f} vs {alone:.1f} images/s ({change:+.1%})",
                change >= -BULK_RATE_TOLERANCE,
            )
        )
    else:
        found.append(Target("bulk import's rate with the singles vs alone", "", "n/a", None))
    deviation = mode.get("shares", {}).get("max_deviation")
    skip = mode.get("shares", {}).get("skip_seconds", 60.0)
    found.append(
        Target(
            f"bulk tenants' share per bucket after the first {skip:g} s",
            f"within ±{SHARE_TOLERANCE:.0%} of equal",
            f"max deviation {deviation:.1%}" if deviation is not None else "no bucket counted",
            deviation <= SHARE_TOLERANCE if deviation is not None else None,
        )
    )
    return found


def _mark(met: bool | None) -> str:
    return {True: "met", False: "MISSED", None: "not measured"}[met]


def markdown(results: Mapping[str, Any]) -> str:
    args = results["arguments"]
    lines = [
        f"# make bench-fairness, {results['date']}",
        "",
        f"{results['machine_headline']}. Bulk import: {args['bulk_images']} generated photos "
        f"({args['megapixels']} MP); singles: {args['singles']} photo(s) of one item, one "
        f"every {args['interval']:g} s from {args['singles_after']:g} s after the import began; "
        f"shares: {args['share_tenants']} tenants x {args['share_images']} photos, "
        f"{args['bucket']:g} s buckets after the first {args['skip']:g} s.",
        "",
        "| Lanes | Measure | Result |",
        "|---|---|---|",
    ]
    for name, mode in results["modes"].items():
        alone = mode.get("alone", {})
        beside = mode.get("with_singles", {})
        single = beside.get("singles", {})
        summary = single.get("summary")
        lines.append(
            f"| {name} | bulk import alone | {alone.get('images_per_second', 0):.1f} images/s "
            f"({alone.get('results', 0)} results in {alone.get('seconds', 0):.0f} s) |"
        )
        lines.append(
            f"| {name} | bulk import with the singles | "
            f"{beside.get('images_per_second', 0):.1f} images/s |"
        )
        if summary:
            backlog = single.get("bulk_backlog_at_notify") or []
            deep = sum(1 for waiting in backlog if waiting > 0)
            lines.append(
                f"| {name} | single photo notify -> Succeeded p50 / p95 / max | "
                f"{summary['p50_seconds']:.2f} / {summary['p95_seconds']:.2f} / "
                f"{summary['max_seconds']:.2f} s ({summary['count']} photos, {deep} of them "
                f"while the import still had work waiting, largest backlog "
                f"{max(backlog, default=0)}) |"
            )
        for phase in ("alone", "with_singles", "shares"):
            peaks = mode.get(phase, {}).get("queue_peaks")
            if peaks:
                shown = "; ".join(
                    f"{lane} {row['depth']:.0f} items, {row['age']:.1f} s"
                    for lane, row in sorted(peaks.items())
                )
                lines.append(
                    f"| {name} | queue gauges' peak in {phase} (depth, oldest) | {shown} |"
                )
        figures = mode.get("shares")
        if figures:
            deviation = figures.get("max_deviation")
            overall = ", ".join(f"{share:.1%}" for share in figures.get("overall", {}).values())
            lines.append(
                f"| {name} | bulk tenants' shares | max deviation from equal "
                f"{'n/a' if deviation is None else f'{deviation:.1%}'} over "
                f"{len(figures['buckets'])} bucket(s); overall {overall or 'n/a'} |"
            )
    lines += [
        "",
        "Targets (lanes on):",
        "",
        "| Target | Wanted | Measured | |",
        "|---|---|---|---|",
    ]
    for target in results.get("targets", []):
        lines.append(
            f"| {target['name']} | {target['target']} | {target['value']} | "
            f"{_mark(target['met'])} |"
        )
    for name, mode in results["modes"].items():
        figures = mode.get("shares")
        if not figures or not figures.get("buckets"):
            continue
        lines += ["", f"Shares per bucket, lanes {name}:", ""]
        tenants = figures["tenants"]
        lines.append("| Seconds | " + " | ".join(tenants) + " |")
        lines.append("|---|" + "---|" * len(tenants))
        for bucket in figures["buckets"]:
            cells = " | ".join(
                f"{bucket['shares'][t]:.1%} ({bucket['results'][t]})" for t in tenants
            )
            lines.append(f"| {bucket['start']:g}-{bucket['end']:g} | {cells} |")
    return "\n".join(lines) + "\n"
