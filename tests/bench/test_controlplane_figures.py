"""`make bench-controlplane`'s arithmetic: a case's figures from metric deltas, the idle
stack's background taken off, and the report, on made-up snapshots (no stack)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from emulsion_bench.controlplane import command, ingestjob_key
from emulsion_bench.controlplane_figures import (
    Background,
    case_figures,
    latency_figures,
    markdown,
)
from emulsion_bench.promtext import Snapshot

GROUP = "emulsion.dev"


def etcd_delta(put: float, wal: float, puts: float = 0) -> Snapshot:
    return Snapshot(
        {
            ("etcd_debugging_mvcc_total_put_size_in_bytes", ()): put,
            ("etcd_disk_wal_write_bytes_total", ()): wal,
            ("etcd_mvcc_put_total", ()): puts,
        }
    )


def writes(resource: str, group: str, verb: str, subresource: str, count: float) -> Any:
    labels = {
        "code": "200",
        "group": group,
        "resource": resource,
        "subresource": subresource,
        "verb": verb,
    }
    return ("apiserver_request_total", tuple(sorted(labels.items()))), count


def apiserver_delta() -> Snapshot:
    return Snapshot(
        dict(
            [
                writes("ingestjobs", GROUP, "POST", "", 1),
                writes("ingestjobs", GROUP, "PATCH", "status", 10),
                writes("ingestjobs", GROUP, "GET", "", 300),
                writes("events", "", "POST", "", 2),
                (
                    (
                        "apiserver_request_body_size_bytes_sum",
                        (("group", GROUP), ("resource", "ingestjobs"), ("verb", "patch")),
                    ),
                    54_321.0,
                ),
            ]
        )
    )


def figures(put: float = 100_000, seconds: float = 10, items: int = 200) -> dict[str, Any]:
    return case_figures(
        items=items,
        outcome="succeeded",
        jobs=1,
        seconds=seconds,
        etcd=etcd_delta(put, put + 2_000, 12),
        apiserver=apiserver_delta(),
        background=Background(seconds=20, put_bytes=2_000, wal_bytes=4_000, puts=4),
        resource="ingestjobs",
        group=GROUP,
    )


def test_the_idle_rate_times_the_case_duration_is_taken_off() -> None:
    etcd = figures(put=100_000, seconds=10)["etcd"]
    assert etcd["put_bytes"] == 100_000
    assert etcd["put_bytes_net"] == 100_000 - 100 * 10  # 2,000 B over 20 s idle
    assert etcd["wal_bytes_net"] == 102_000 - 200 * 10
    assert etcd["put_bytes_per_item"] == round(99_000 / 200)
    assert etcd["put_bytes_per_job"] == 99_000


def test_the_background_never_takes_a_figure_below_zero() -> None:
    assert figures(put=500, seconds=60)["etcd"]["put_bytes_net"] == 0


def test_apiserver_writes_per_job_by_verb_events_apart() -> None:
    apiserver = figures()["apiserver"]
    assert apiserver["ingestjob_writes"] == {"create": 1, "patch status": 10}
    assert apiserver["ingestjob_writes_per_job"] == 11
    assert apiserver["event_writes"] == {"create": 2}
    assert apiserver["ingestjob_body_bytes"] == {"patch": 54_321}


def test_an_idle_window_of_no_time_subtracts_nothing() -> None:
    background = Background(seconds=0, put_bytes=0, wal_bytes=0, puts=0)
    assert background.rate(1_000) == 0
    assert background.as_dict()["put_bytes_per_second"] == 0


@given(st.lists(st.floats(0.001, 100, allow_nan=False), min_size=1, max_size=50))
def test_latency_percentiles_are_measured_values_in_order(seconds: list[float]) -> None:
    latency = latency_figures(seconds)
    measured = {round(s * 1000, 1) for s in seconds}
    assert latency["p50_ms"] in measured and latency["p95_ms"] in measured
    assert latency["p50_ms"] <= latency["p95_ms"] <= latency["max_ms"]
    assert latency["runs"] == len(seconds)


def test_the_report_has_a_row_per_case_and_the_listing() -> None:
    case = {**figures(), "stored_bytes": 20_484}
    failed = {**figures(items=2000), "outcome": "failed", "stored_bytes": 184_718}
    results = {
        "date": "2026-12-07T05:00:04+00:00",
        "label": "before",
        "command": "make bench-controlplane",
        "machine_headline": "2 cores",
        "wall_seconds": 600.0,
        "load_average_at_start": [1.0, 2.0, 3.0],
        "background": Background(20, 2_000, 4_000, 4).as_dict(),
        "cases": [case, failed],
        "list": {
            **latency_figures([4.2, 4.5, 7.3]),
            "jobs_present": 5000,
            "how": "copies",
            "ingestjob_bytes": 28_000_000,
            "etcd_db_bytes": 75_000_000,
        },
    }
    text = markdown(results)
    assert "| 200 items, all succeeded |" in text
    assert "| 2,000 items, all failed |" in text and "184,718 B" in text
    assert "create 1, patch status 10" in text
    assert "with 5,000 finished IngestJobs present" in text and "p95 7300 ms" in text


def test_the_command_says_how_to_run_it_again() -> None:
    assert command([]) == "make bench-controlplane"
    assert command(["--label", "after"]) == (
        "make bench-controlplane BENCH_CONTROLPLANE_ARGS='--label after'"
    )


def test_the_etcd_key_of_an_ingestjob() -> None:
    assert ingestjob_key("default", "j1") == "/registry/emulsion.dev/ingestjobs/default/j1"
    assert ingestjob_key("default") == "/registry/emulsion.dev/ingestjobs/default/"
