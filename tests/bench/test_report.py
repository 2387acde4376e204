"""The report of `make bench`: it names the machine and the load, shows every process's
CPU per image, and marks each of the performance targets met or missed from the figures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from emulsion_bench import report, targets

PROCESSES = ("cli", "api", "kube-apiserver", "etcd", "controller", "nats", "processor", "minio")


def uses(cpu_ms: float, rss_mb: float, names: tuple[str, ...] = PROCESSES) -> dict[str, Any]:
    return {
        name: {"cpu_seconds": cpu_ms, "cpu_per_image_ms": cpu_ms, "peak_rss_mb": rss_mb}
        for name in names
    }


def notify_runs(p99_ms: float, running: bool | None = None) -> list[dict[str, Any]]:
    runs = []
    for clients in (1, 32):
        run: dict[str, Any] = {
            "clients": clients,
            "rate_per_client": 10.0 if clients == 1 else 1.0,
            "requests": 150,
            "errors": 0,
            "p50_ms": p99_ms / 4,
            "p99_ms": p99_ms,
            "max_ms": p99_ms * 1.5,
            "latencies_ms": [p99_ms / 4, p99_ms],
        }
        if running is not None:
            run["gallery_running_at_end"] = running
        runs.append(run)
    return runs


def results(*, processor_cpu_ms: float = 90.0, notify_p99_ms: float = 30.0) -> dict[str, Any]:
    load = [1.25, 0.5, 0.25]
    emulsion_processes = uses(5.0, 100.0)
    emulsion_processes["processor"] = {
        "cpu_seconds": 1.0,
        "cpu_per_image_ms": processor_cpu_ms,
        "peak_rss_mb": 200.0,
    }
    emulsion_processes["janitor"] = {"cpu_seconds": 0.1, "cpu_per_image_ms": 1, "peak_rss_mb": 70}
    emulsion_processes["controller"] = {
        "cpu_seconds": 0.1,
        "cpu_per_image_ms": 1,
        "peak_rss_mb": 90,
    }
    baseline = {
        "images": 1361,
        "errors": 0,
        "seconds": 200.0,
        "p50_ms": 700.0,
        "p99_ms": 2000.0,
        "latencies_ms": [700.0, 2000.0],
        "timeline": [(1.0, 1), (200.0, 1361)],
        "load_average_at_start": load,
    }
    return {
        "date": "2026-11-29T12:00:00+00:00",
        "machine": {"cpu": "Test CPU 9000", "cores": 2, "memory_gib": 23.5},
        "gallery": {"images": 1361, "megabytes": 4126.0, "megapixels": 11527.0},
        "concurrency": 8,
        "phases": {
            "limit": {
                "images": 1361,
                "workers": 2,
                "seconds": 65.0,
                "images_per_second": 20.9,
                "cpu_per_image_ms": 80.0,
                "load_average_at_start": load,
                "processes": uses(80.0, 150.0, ("cli",)),
            },
            "notify_idle": {
                "requests": 300,
                "runs": notify_runs(notify_p99_ms),
                "load_average_at_start": load,
                "processes": uses(1.0, 100.0),
            },
            "emulsion": {
                "images": 1361,
                "succeeded": 1361,
                "failed": 0,
                "end_to_end_seconds": 110.0,
                "images_per_second": 12.4,
                "cli_head_seconds": 9.5,
                "cli_tail_seconds": 4.25,
                "upload_mb_per_second": 80.0,
                "timeline": [(0.5, 1), (110.0, 1361)],
                "uploads_timeline": [(0.1, 1), (50.0, 1361)],
                "load_average_at_start": load,
                "processes": emulsion_processes,
            },
            "notify_gallery": {
                "requests": 300,
                "runs": notify_runs(notify_p99_ms * 2, running=True),
                "load_average_at_start": load,
                "processes": uses(1.0, 100.0),
            },
            "naive": {
                **baseline,
                "images_per_second": 2.2,
                "processes": uses(900.0, 100.0, ("cli", "minio", "baseline")),
            },
            "fair": {
                **baseline,
                "images_per_second": 10.0,
                "processes": uses(100.0, 100.0, ("cli", "minio", "baseline")),
            },
        },
    }


def verdicts(document: dict[str, Any]) -> dict[str, bool | None]:
    return {verdict["name"]: verdict["met"] for verdict in targets.evaluate(document)}


def test_targets_met_are_marked_met() -> None:
    assert set(verdicts(results()).values()) == {True}


def test_each_target_is_missed_on_its_own_figure() -> None:
    assert verdicts(results(processor_cpu_ms=97.0))["Processor efficiency"] is False
    missed = verdicts(results(notify_p99_ms=60.0))
    assert missed["Notify, idle stack"] is False
    assert missed["Notify, during a gallery"] is True  # 120 ms <= 250 ms

    slow = results()
    slow["phases"]["emulsion"]["images_per_second"] = 9.9
    assert verdicts(slow)["Seed scenario (end to end)"] is False
    assert verdicts(slow)["Against the fair baseline"] is False

    heavy = results()
    heavy["phases"]["emulsion"]["processes"]["api"]["peak_rss_mb"] = 161.0
    assert verdicts(heavy)["Memory (during the gallery)"] is False


def test_a_gallery_smaller_than_the_seeds_does_not_decide_the_seed_scenario() -> None:
    small = results()
    small["phases"]["emulsion"]["images"] = 60
    assert verdicts(small)["Seed scenario (end to end)"] is None


def test_notify_after_the_gallery_ended_does_not_decide_the_busy_target() -> None:
    ended = results()
    for run in ended["phases"]["notify_gallery"]["runs"]:
        run["gallery_running_at_end"] = False
    assert verdicts(ended)["Notify, during a gallery"] is None


def test_a_phase_not_run_is_not_measured_rather_than_met() -> None:
    partial = results()
    del partial["phases"]["fair"], partial["phases"]["notify_gallery"]
    found = verdicts(partial)
    assert found["Against the fair baseline"] is None
    assert found["Notify, during a gallery"] is None


def test_the_markdown_names_machine_load_processes_and_targets() -> None:
    document = results()
    document["targets"] = targets.evaluate(document)
    text = report.markdown(document)
    assert "2 cores (Test CPU 9000), 23.5 GiB" in text
    assert "1.25 / 0.50 / 0.25" in text  # the load average at a phase's start
    assert "9.5 s and 4.2 s" in text  # the CLI's head and tail, apart from end to end
    for process in (*PROCESSES, "janitor", "baseline"):
        assert f"| {process} |" in text
    assert "| processor | 80.0 ms, 150 MB" not in text
    assert "90.0 ms, 200 MB" in text  # the processor's CPU per image during the gallery
    for verdict in document["targets"]:
        assert f"| {verdict['name']} |" in text
    assert "**missed**" not in text


@pytest.mark.parametrize("missed", [True, False])
def test_the_markdown_marks_a_missed_target(missed: bool) -> None:
    document = results(processor_cpu_ms=200.0 if missed else 90.0)
    document["targets"] = targets.evaluate(document)
    assert ("**missed**" in report.markdown(document)) is missed


def test_write_leaves_json_markdown_and_three_plots(tmp_path: Path) -> None:
    document = results()
    document["targets"] = targets.evaluate(document)
    paths = report.write(document, tmp_path)
    assert sorted(path.name for path in paths) == [
        "2026-11-29-cpu-per-image.png",
        "2026-11-29-latency-cdf.png",
        "2026-11-29-throughput.png",
        "2026-11-29.json",
        "2026-11-29.md",
    ]
    assert json.loads((tmp_path / "2026-11-29.json").read_text())["machine"]["cores"] == 2
    for path in paths:
        if path.suffix == ".png":
            assert path.read_bytes().startswith(b"\x89PNG")
