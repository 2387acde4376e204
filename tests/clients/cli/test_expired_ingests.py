"""An ingest after its TTL: the API answers 410 with what is still known, and
`emulsion status` prints it plainly with its own exit code; `emulsion failures` pages
through every failure. On the real stack, with the API's jobs expiring seconds after
they finish."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulsion_cli.errors import EXIT_EXPIRED, EXIT_ITEMS_FAILED
from emulsion_contracts import natsauth, wire
from emulsion_contracts.ingestjob import JobItem
from emulsion_contracts.jobrecords import FailureDetail, JobSummaryRecord, OutcomeRecord
from emulsion_devstack.processes import stop_all
from emulsion_devstack.stack import Endpoints, LocalStack
from emulsion_runtime import records_store
from emulsion_runtime.records_store import JobRecords

from .conftest import Cli, Services
from .test_cli_on_stack import ingest_json, small_gallery

NAMESPACE = "default"
# How long a finished job stays: short, so its expiry is seen within the test.
TTL_SECONDS = 2
EXPIRY_DEADLINE = 120.0


@pytest.fixture(scope="module")
def services(stack: Endpoints, stack_state_dir: Path) -> Iterator[Services]:
    """The conftest's system, with the API's jobs expiring TTL_SECONDS after they end."""
    local = LocalStack(stack_state_dir, say=lambda line: None)
    records = [
        local.start_service("controller", {"EMULSION_NAMESPACES": NAMESPACE}),
        local.start_service("processor"),
        local.start_service(
            "api",
            {"EMULSION_NAMESPACE": NAMESPACE, "EMULSION_JOB_TTL_SECONDS": str(TTL_SECONDS)},
        ),
    ]
    try:
        yield Services(LocalStack.service_url(records[-1]), stack.api_token)
    finally:
        stop_all(records)


def gone(services: Services, name: str) -> dict[str, Any]:
    """The 410 problem once the job is deleted; waits on that, with a deadline."""
    deadline = time.monotonic() + EXPIRY_DEADLINE
    headers = {"Authorization": f"Bearer {services.token}"}
    with httpx.Client(base_url=services.api_url, headers=headers, timeout=30) as api:
        while time.monotonic() < deadline:
            answer = api.get(f"/v1/ingests/{name}", params={"wait": 5})
            if answer.status_code == 410:
                problem: dict[str, Any] = answer.json()
                return problem
            assert answer.status_code == 200, answer.text
    pytest.fail(f"{name} was not removed within {EXPIRY_DEADLINE} s of its TTL")


def test_an_expired_ingest_tells_how_it_ended_and_the_assets_it_made(
    cli: Cli, services: Services, tmp_path: Path
) -> None:
    photos, names = small_gallery(tmp_path, 2, seed=31)
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00garbage" * 500)
    code, summary, stderr = ingest_json(cli, photos, "cli-expired")
    assert code == EXIT_ITEMS_FAILED, stderr
    [name] = summary["jobs"]

    problem = gone(services, name)

    assert problem["code"] == "ingest_expired"
    ingest = problem["ingest"]
    assert (ingest["phase"], ingest["total"], ingest["succeeded"], ingest["failed"]) == (
        "PartiallyFailed",
        3,
        2,
        1,
    )
    assert sorted(asset["asset"] for asset in ingest["assets"]) == sorted(names)

    status = cli.run("status", name)
    assert status.returncode == EXIT_EXPIRED, status.stderr
    assert "expired" in status.stdout and "Traceback" not in status.stderr
    for made in names:
        assert made in status.stdout
    assert f"emulsion failures {name}" in status.stdout
    # A script gets the same as JSON, and the same exit code.
    as_json = cli.run("status", name, "-o", "json")
    assert as_json.returncode == EXIT_EXPIRED
    assert json.loads(as_json.stdout)["name"] == name
    watched = cli.run("status", name, "--watch")
    assert watched.returncode == EXIT_EXPIRED, watched.stderr

    failures = cli.run("failures", name, "-o", "json")
    assert failures.returncode == 0, failures.stderr
    [failure] = json.loads(failures.stdout)
    assert (failure["asset"], failure["reason"]) == ("broken.jpg", "NotAnImage")


def test_failures_page_through_every_failure_and_status_prints_a_recorded_expiry(
    cli: Cli, stack: Endpoints
) -> None:
    """Records as the controller writes them, for a job no longer in the cluster: the CLI's
    side alone, whatever the controller does."""
    name, uid = f"01exp{uuid.uuid4().hex[:20]}", str(uuid.uuid4())
    count = 1203
    items = [
        JobItem(source=f"staging/cli-expired/01JQ{i:022d}/p{i}.jpg", asset=f"p {i}.jpg")
        for i in range(count)
    ]
    failed = f"1-{count - 1}"

    async def record() -> None:
        api = await stack.nats_connect(natsauth.API_IDENTITY)
        controller = await stack.nats_connect(natsauth.CONTROLLER_IDENTITY)
        try:
            await records_store.put_items(api.jetstream(), NAMESPACE, name, items)
            kv = await controller.jetstream().key_value(wire.RECORDS_BUCKET)
            records = JobRecords(kv)
            outcomes = OutcomeRecord(
                uid=uid, total=count, succeeded="0", failed=failed, reasons={"NotAnImage": failed}
            )
            await records.write_outcomes(NAMESPACE, name, outcomes, None)
            for index in range(1, count):
                detail = FailureDetail(
                    uid=uid, index=index, asset=f"p {index}.jpg", reason="NotAnImage"
                )
                await records.put_failure(NAMESPACE, name, detail)
            summary = JobSummaryRecord(
                uid=uid,
                collection="cli-expired",
                phase="PartiallyFailed",
                total=count,
                succeeded=1,
                failed=count - 1,
                reasons={"NotAnImage": count - 1},
            )
            await records.put_summary(NAMESPACE, name, summary)
        finally:
            await api.drain()
            await controller.drain()

    asyncio.run(record())

    status = cli.run("status", name)
    assert status.returncode == EXIT_EXPIRED, status.stderr
    assert "finished PartiallyFailed and has expired" in status.stdout
    assert "p 0.jpg" in status.stdout and "NotAnImage 1202" in status.stdout

    listed = cli.run("failures", name, "-o", "json", "--page-size", "500")
    assert listed.returncode == 0, listed.stderr
    assert [item["index"] for item in json.loads(listed.stdout)] == list(range(1, count))
    first = cli.run("failures", name, "--limit", "3")
    assert first.returncode == 0 and "p 3.jpg" in first.stdout and "p 4.jpg" not in first.stdout
