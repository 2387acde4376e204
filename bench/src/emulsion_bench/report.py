"""The bench's outputs: the raw JSON, a Markdown report for the README, and three plots.

Every output names the machine (CPU model, cores, memory) and each phase's load average
at its start, so a figure is never read without the conditions it was measured in.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; there is no display here

import matplotlib.pyplot as plt

from emulsion_bench.machine import headline

PHASE_TITLES = {
    "limit": "Pure-Pillow limit (the processor's render, all cores, no network)",
    "notify_idle": "Notify on an idle stack",
    "emulsion": "Emulsion end to end (first upload → last item's outcome)",
    "notify_gallery": "Notify during a gallery",
    "naive": "Naive synchronous baseline (seeds' full-size render in the request)",
    "fair": "Fair synchronous baseline (the processor's render in the request)",
}
# Processes in the order a reader follows an image through the stack.
PROCESS_ORDER = (
    "render pool",
    "cli",
    "gallery cli",
    "api",
    "kube-apiserver",
    "etcd",
    "controller",
    "nats",
    "processor",
    "minio",
    "janitor",
    "baseline",
)


def _load(figures: dict[str, Any]) -> str:
    return " / ".join(f"{value:.2f}" for value in figures["load_average_at_start"])


def _phase_rows(phases: dict[str, Any]) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []
    if "limit" in phases:
        limit = phases["limit"]
        rows.append(
            (
                PHASE_TITLES["limit"],
                f"{limit['images_per_second']:.1f} images/s on {limit['workers']} processes, "
                f"render CPU {limit['cpu_per_image_ms']:.0f} ms/image",
                _load(limit),
            )
        )
    if "emulsion" in phases:
        emulsion = phases["emulsion"]
        rows.append(
            (
                PHASE_TITLES["emulsion"],
                f"{emulsion['images_per_second']:.1f} images/s, "
                f"{emulsion['end_to_end_seconds']:.1f} s, "
                f"{emulsion['succeeded']}/{emulsion['images']} succeeded",
                _load(emulsion),
            )
        )
        rows.append(
            (
                "… the CLI's own head (find + hash) and tail (final listing)",
                f"{emulsion['cli_head_seconds']:.1f} s and {emulsion['cli_tail_seconds']:.1f} s",
                "",
            )
        )
        rows.append(("… upload, direct to S3", f"{emulsion['upload_mb_per_second']:.0f} MB/s", ""))
        if "limit" in phases:
            ratio = emulsion["images_per_second"] / phases["limit"]["images_per_second"]
            rows.append(("… Emulsion / the limit", f"{ratio:.2f}", ""))
    for mode in ("naive", "fair"):
        if mode in phases:
            baseline = phases[mode]
            rows.append(
                (
                    PHASE_TITLES[mode],
                    f"{baseline['images_per_second']:.1f} images/s, {baseline['seconds']:.1f} s, "
                    f"request p50 / p99 {baseline['p50_ms']:.0f} / {baseline['p99_ms']:.0f} ms, "
                    f"{baseline['errors']} errors",
                    _load(baseline),
                )
            )
    for phase in ("notify_idle", "notify_gallery"):
        if phase not in phases:
            continue
        for run in phases[phase]["runs"]:
            busy = "" if run.get("gallery_running_at_end", True) else " (the gallery ended first)"
            rows.append(
                (
                    f"{PHASE_TITLES[phase]}: {run['clients']} client(s) x "
                    f"{run['rate_per_client']:g} req/s",
                    f"p50 / p99 / max {run['p50_ms']:.1f} / {run['p99_ms']:.1f} / "
                    f"{run['max_ms']:.0f} ms, {run['requests']} requests, "
                    f"{run['errors']} errors{busy}",
                    _load(phases[phase]),
                )
            )
    return rows


def _process_table(phases: dict[str, Any]) -> list[str]:
    """CPU per image (ms) and peak RSS (MB) of every process, one column per phase."""
    shown = [p for p in ("limit", "emulsion", "naive", "fair") if p in phases]
    names = {name for phase in shown for name in phases[phase]["processes"]}
    ordered = [n for n in PROCESS_ORDER if n in names] + sorted(names - set(PROCESS_ORDER))
    header = "| Process | " + " | ".join(f"{p}: CPU ms/image, peak RSS MB" for p in shown) + " |"
    lines = [header, "|---|" + "---|" * len(shown)]
    for name in ordered:
        cells = []
        for phase in shown:
            use = phases[phase]["processes"].get(name)
            cells.append(
                f"{use['cpu_per_image_ms']:.1f} ms, {use['peak_rss_mb']:.0f} MB" if use else "—"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    totals = [
        f"{sum(u['cpu_per_image_ms'] for u in phases[p]['processes'].values()):.1f} ms"
        for p in shown
    ]
    lines.append("| **all processes** | " + " | ".join(totals) + " |")
    return lines


def markdown(results: dict[str, Any]) -> str:
    gallery = results["gallery"]
    phases = results["phases"]
    lines = [
        f"{gallery['images']} images ({gallery['megapixels']:.0f} MP, "
        f"{gallery['megabytes']:.0f} MB), concurrency {results['concurrency']}, on "
        f"{headline(results['machine'])}, {results['date']}. Load average (1/5/15 min) "
        "at the start of each phase in the last column.",
        "",
        "| Measure | Result | Load at start |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {value} | {load} |" for name, value, load in _phase_rows(phases)]
    lines += ["", "CPU (user + system) per image and peak RSS of each process, per phase:", ""]
    lines += _process_table(phases)
    if results.get("targets"):
        lines += [
            "",
            "The performance targets:",
            "",
            "| Target | Goal | Measured | |",
            "|---|---|---|---|",
        ]
        marks = {True: "met", False: "**missed**", None: "not measured"}
        lines += [
            f"| {t['name']} | {t['target']} | {t['measured']} | {marks[t['met']]} |"
            for t in results["targets"]
        ]
    return "\n".join(lines)


def _caption(results: dict[str, Any]) -> str:
    return f"{results['gallery']['images']} images on {headline(results['machine'])}"


def _throughput_plot(results: dict[str, Any], path: Path) -> None:
    phases = results["phases"]
    figure, axes = plt.subplots(figsize=(8, 4.8))
    series = []
    if "emulsion" in phases:
        series += [
            ("Emulsion: items finished", phases["emulsion"]["timeline"], "-"),
            ("Emulsion: files uploaded", phases["emulsion"]["uploads_timeline"], ":"),
        ]
    series += [
        (f"{mode} baseline: images done", phases[mode]["timeline"], "--")
        for mode in ("naive", "fair")
        if mode in phases
    ]
    for label, timeline, style in series:
        if timeline:
            seconds, done = zip(*timeline, strict=True)
            axes.step(seconds, done, where="post", label=label, linestyle=style)
    if "limit" in phases:
        rate = phases["limit"]["images_per_second"]
        images = results["gallery"]["images"]
        axes.plot(
            [0, images / rate], [0, images], color="grey", alpha=0.6, label="pure-Pillow limit"
        )
    axes.set_xlabel("seconds since the first upload")
    axes.set_ylabel("images")
    axes.set_title(f"Throughput over time\n{_caption(results)}", fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _latency_cdf_plot(results: dict[str, Any], path: Path) -> None:
    phases = results["phases"]
    figure, axes = plt.subplots(figsize=(8, 4.8))
    series = [
        (f"{mode} baseline request", phases[mode]["latencies_ms"])
        for mode in ("naive", "fair")
        if mode in phases
    ]
    for phase, label in (("notify_idle", "idle"), ("notify_gallery", "during a gallery")):
        for run in phases.get(phase, {}).get("runs", []):
            series.append((f"notify, {run['clients']} client(s), {label}", run["latencies_ms"]))
    for label, latencies in series:
        ordered = sorted(latencies)
        if ordered:
            fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
            axes.step(ordered, fractions, where="post", label=label)
    axes.set_xscale("log")
    axes.set_xlabel("latency (ms, log scale)")
    axes.set_ylabel("fraction of requests")
    axes.set_title(f"Request latency CDF\n{_caption(results)}", fontsize=10)
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _cpu_plot(results: dict[str, Any], path: Path) -> None:
    """Stacked CPU per image by process, per phase: where the cores go."""
    phases = results["phases"]
    shown = [p for p in ("limit", "emulsion", "naive", "fair") if p in phases]
    names = [n for n in PROCESS_ORDER if any(n in phases[p]["processes"] for p in shown)]
    figure, axes = plt.subplots(figsize=(8, 4.8))
    bottoms = [0.0] * len(shown)
    for name in names:
        heights = [phases[p]["processes"].get(name, {}).get("cpu_per_image_ms", 0.0) for p in shown]
        axes.bar(shown, heights, bottom=bottoms, label=name)
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    axes.set_ylabel("CPU ms per image (user + system)")
    loads = ", ".join(f"{p} {phases[p]['load_average_at_start'][0]:.1f}" for p in shown)
    axes.set_title(
        f"CPU per image by process\n{_caption(results)}; load at start: {loads}", fontsize=9
    )
    axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(results: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    stem = results["date"][:10]
    paths = {
        "json": directory / f"{stem}.json",
        "md": directory / f"{stem}.md",
        "throughput": directory / f"{stem}-throughput.png",
        "latency": directory / f"{stem}-latency-cdf.png",
        "cpu": directory / f"{stem}-cpu-per-image.png",
    }
    paths["json"].write_text(json.dumps(results, indent=1) + "\n")
    paths["md"].write_text(markdown(results) + "\n")
    _throughput_plot(results, paths["throughput"])
    _latency_cdf_plot(results, paths["latency"])
    _cpu_plot(results, paths["cpu"])
    return list(paths.values())
