"""A well-behaved client under tight per-token limits finishes anyway: `emulsion ingest`
runs with one token against an API whose limits they meet (presigns; items in flight and
open event streams, held deterministically while the controller is not yet running), on
the real stack with the controller and a processor."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulsion_devstack.processes import ProcessRecord, stop_all, wait_for
from emulsion_devstack.stack import Endpoints, LocalStack

from .conftest import Cli, Services
from .test_cli_on_stack import small_gallery

# Every token: 4 files at once then 1 a second, an ingest request every 4 s, 4 items in
# flight, one event stream: a second run meets each limit while the first runs.
TIGHT = {
    "default": {
        "presignsPerSecond": 1,
        "presignBurst": 4,
        "notifiesPerSecond": 0.25,
        "notifyBurst": 1,
        "itemsInFlight": 4,
        "watches": 1,
    }
}


def metrics_url(api_url: str, pid: int) -> str:
    environment = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    port = next(v for v in environment if v.startswith(b"EMULSION_METRICS_PORT="))
    return f"http://127.0.0.1:{port.split(b'=', 1)[1].decode()}/metrics"


@pytest.fixture
def limited_api(stack: Endpoints, stack_state_dir: Path) -> Iterator[tuple[Services, str]]:
    local = LocalStack(stack_state_dir, say=lambda line: None)
    records = [
        local.start_service("controller", {"EMULSION_NAMESPACES": "default"}),
        local.start_service("processor"),
        local.start_service(
            "api",
            {"EMULSION_NAMESPACE": "default", "EMULSION_API_TOKEN_LIMITS": json.dumps(TIGHT)},
        ),
    ]
    try:
        url = LocalStack.service_url(records[-1])
        yield Services(url, stack.api_token), metrics_url(url, records[-1].pid)
    finally:
        stop_all(records)


def test_two_runs_under_tight_limits_are_throttled_and_both_finish(
    limited_api: tuple[Services, str], tmp_path: Path
) -> None:
    services, metrics = limited_api
    runs = []
    for n in range(2):
        photos, _ = small_gallery(tmp_path / f"gallery-{n}", 4, seed=40 + n)
        cli = Cli(services, tmp_path / f"cache-{n}")
        runs.append(
            cli.start("ingest", str(photos), "--collection", f"cli-throttled-{n}", "--json")
        )

    results = [run.communicate(timeout=240) for run in runs]

    for run, (stdout, stderr) in zip(runs, results, strict=True):
        assert run.returncode == 0, stderr
        summary = json.loads(stdout)
        assert (summary["succeeded"], summary["failed"]) == (4, [])
    throttled = [
        line
        for line in httpx.get(metrics).text.splitlines()
        if line.startswith("emulsion_api_throttled_requests_total{")
        and float(line.rsplit(" ", 1)[1]) > 0
    ]
    # The runs did meet the limits: the second waited for the first.
    assert throttled, "no request was throttled"


def throttled_count(metrics: str, limit: str) -> float:
    for line in httpx.get(metrics).text.splitlines():
        if line.startswith("emulsion_api_throttled_requests_total{") and f'limit="{limit}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


@pytest.fixture
def paused(stack: Endpoints, stack_state_dir: Path) -> Iterator[tuple[Services, str, Any]]:
    """An API (one event stream and 4 items in flight per token) and a processor; the
    controller is started by the test (`start_controller`), so jobs wait until then."""
    local = LocalStack(stack_state_dir, say=lambda line: None)
    limits = {"default": {"itemsInFlight": 4, "watches": 1}}
    records: list[ProcessRecord] = [
        local.start_service("processor"),
        local.start_service(
            "api",
            {"EMULSION_NAMESPACE": "default", "EMULSION_API_TOKEN_LIMITS": json.dumps(limits)},
        ),
    ]

    def start_controller() -> None:
        records.append(local.start_service("controller", {"EMULSION_NAMESPACES": "default"}))

    try:
        url = LocalStack.service_url(records[1])
        yield Services(url, stack.api_token), metrics_url(url, records[1].pid), start_controller
    finally:
        stop_all(records)


def test_runs_held_at_their_items_in_flight_and_open_streams_carry_on_and_finish(
    paused: tuple[Services, str, Any], tmp_path: Path
) -> None:
    services, metrics, start_controller = paused
    # A job of one item, waiting (no controller yet), and an event stream on it that
    # holds the token's one follow.
    held_photos, _ = small_gallery(tmp_path / "held", 1, seed=50)
    held = Cli(services, tmp_path / "cache-held")
    done = held.run("ingest", str(held_photos), "--collection", "cli-held", "--no-wait", "--json")
    assert done.returncode == 0, done.stderr
    (held_job,) = json.loads(done.stdout)["jobs"]
    headers = {"Authorization": f"Bearer {services.token}"}
    with (
        httpx.Client(base_url=services.api_url, headers=headers, timeout=60) as client,
        contextlib.ExitStack() as holding,
    ):
        stream = holding.enter_context(client.stream("GET", f"/v1/ingests/{held_job}/events"))
        assert stream.status_code == 200
        # Run A (3 items: 1 + 3 in flight, admitted) meets the open stream when it follows.
        photos_a, _ = small_gallery(tmp_path / "a", 3, seed=51)
        run_a = Cli(services, tmp_path / "cache-a").start(
            "ingest", str(photos_a), "--collection", "cli-held-a", "--json"
        )
        try:
            wait_for("run A's follow refused", lambda: throttled_count(metrics, "watches") > 0)
        except AssertionError:
            run_a.kill()
            raise AssertionError(run_a.communicate()) from None
        # Run B (3 more items) meets the token's items in flight.
        photos_b, _ = small_gallery(tmp_path / "b", 3, seed=52)
        run_b = Cli(services, tmp_path / "cache-b").start(
            "ingest", str(photos_b), "--collection", "cli-held-b", "--json"
        )
        wait_for(
            "run B's ingest refused",
            lambda: throttled_count(metrics, "items_in_flight") > 0,
        )
        assert run_a.poll() is None and run_b.poll() is None
        # The stream closed, the controller started: both runs go on and finish.
        holding.close()
        start_controller()

        results = [run.communicate(timeout=240) for run in (run_a, run_b)]

    for run, (stdout, stderr) in zip((run_a, run_b), results, strict=True):
        assert run.returncode == 0, stderr
        summary = json.loads(stdout)
        assert (summary["succeeded"], summary["failed"]) == (3, [])
