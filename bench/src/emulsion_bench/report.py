"""The bench's outputs: the raw JSON, a Markdown table for the README, and two plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; there is no display here

import matplotlib.pyplot as plt


def markdown_table(results: dict[str, Any]) -> str:
    machine = results["machine"]
    gallery = results["gallery"]
    limit = results["pillow_limit"]
    emulsion = results["emulsion"]
    baseline = results["baseline"]
    notify = {row["clients"]: row for row in results["notify"]}
    rows = [
        ("Pure-Pillow limit (render only, all cores)", f"{limit['images_per_second']:.1f} img/s"),
        (
            "Emulsion end to end (upload → all finished)",
            f"{emulsion['images_per_second']:.1f} img/s, {emulsion['wall_seconds']:.1f} s, "
            f"{emulsion['succeeded']}/{emulsion['images']} succeeded",
        ),
        ("Emulsion / pure-Pillow limit", f"{emulsion['ratio_to_pillow_limit']:.2f}"),
        ("Emulsion upload (direct to S3)", f"{emulsion['upload_mb_per_second']:.0f} MB/s"),
        (
            "Synchronous baseline (process inside the request)",
            f"{baseline['requests_per_second']:.1f} req/s, {baseline['wall_seconds']:.1f} s",
        ),
        (
            "Emulsion / baseline throughput",
            f"{emulsion['images_per_second'] / baseline['requests_per_second']:.2f}",
        ),
        (
            "Baseline request latency p50 / p99",
            f"{baseline['p50_ms']:.0f} / {baseline['p99_ms']:.0f} ms",
        ),
    ]
    for clients, row in sorted(notify.items()):
        rows.append(
            (
                f"Notify `POST /v1/ingests` p50 / p99, {clients} client(s)",
                f"{row['p50_ms']:.1f} / {row['p99_ms']:.1f} ms "
                f"({row['requests_per_second']:.0f} req/s)",
            )
        )
    for process, megabytes in sorted(results["peak_rss_mb"].items()):
        rows.append((f"Peak RSS {process}", f"{megabytes:.0f} MB"))
    header = (
        f"{gallery['images']} images ({gallery['megapixels']:.0f} MP, "
        f"{gallery['megabytes']:.0f} MB), concurrency {results['concurrency']}, "
        f"{machine['cpus']} CPUs ({machine['cpu']}), {machine['memory_gib']} GiB, "
        f"{results['date']}"
    )
    lines = [header, "", "| Measure | Result |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    return "\n".join(lines)


def _throughput_plot(results: dict[str, Any], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for label, timeline in (
        ("Emulsion (items finished)", results["emulsion"]["timeline"]),
        ("synchronous baseline (requests answered)", results["baseline"]["timeline"]),
    ):
        if timeline:
            seconds, done = zip(*timeline, strict=True)
            axes.step(seconds, done, where="post", label=label)
    axes.set_xlabel("seconds since start")
    axes.set_ylabel("images done")
    axes.set_title("Throughput over time")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _latency_cdf_plot(results: dict[str, Any], path: Path) -> None:
    figure, axes = plt.subplots(figsize=(8, 4.5))
    series = [("baseline request", results["baseline"]["latencies_ms"])]
    series += [
        (f"notify, {row['clients']} client(s)", row["latencies_ms"]) for row in results["notify"]
    ]
    for label, latencies in series:
        ordered = sorted(latencies)
        if ordered:
            fractions = [(i + 1) / len(ordered) for i in range(len(ordered))]
            axes.step(ordered, fractions, where="post", label=label)
    axes.set_xscale("log")
    axes.set_xlabel("latency (ms, log scale)")
    axes.set_ylabel("fraction of requests")
    axes.set_title("Request latency CDF")
    axes.grid(alpha=0.3, which="both")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(results: dict[str, Any], directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    stem = results["date"][:10]
    raw = directory / f"{stem}.json"
    table = directory / f"{stem}.md"
    throughput = directory / f"{stem}-throughput.png"
    latency = directory / f"{stem}-latency-cdf.png"
    raw.write_text(json.dumps(results, indent=1) + "\n")
    table.write_text(markdown_table(results) + "\n")
    _throughput_plot(results, throughput)
    _latency_cdf_plot(results, latency)
    return [raw, table, throughput, latency]
