"""`emulsion cancel` and `emulsion retry` through the real API, controller and processor,
judged by the fault oracle (tests/faults/oracle.py): a job cancelled while it runs ends
with every item exactly one outcome — succeeded, or failed `Cancelled` —, nothing live is
deleted, and after the grace and a sweep nothing is orphaned; its cancelled items, retried,
all succeed (those whose upload the cancelled attempt had claimed are reported instead)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from emulsion_contracts import keys
from emulsion_devstack.stack import Endpoints
from tests.faults import workload
from tests.faults.oracle import Case, assess

from .conftest import Cli, Services

GRACE_SECONDS = 4.0
# Photo-sized images, a second or more each to render: the cancel (a CLI start away)
# comes while most are still queued.
COUNT = 12


def run_json(cli: Cli, *arguments: str) -> Any:
    done = cli.run(*arguments, "-o", "json")
    assert done.returncode == 0, f"{arguments}: {done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)


def test_cancel_mid_run_then_retry_the_cancelled_items(
    cli: Cli, services: Services, stack: Endpoints, tmp_path: Path
) -> None:
    collection = f"cancel-{keys.new_ulid().lower()[-10:]}"
    client = workload.Client.of(stack, services.api_url)
    environment = {**stack.environment(), "EMULSION_API_URL": services.api_url}
    case = Case(client, environment, GRACE_SECONDS).watching(collection)
    files = [workload.big_image(tmp_path / "big.jpg")] * COUNT
    assets = [f"big-{index:02d}.jpg" for index in range(COUNT)]
    staged = workload.upload(client, collection, files)
    [job] = workload.ingest(client, collection, staged, assets)
    case.jobs.append(job)

    asked = run_json(cli, "cancel", job)

    assert asked["cancelled_at"] and asked["total"] == COUNT
    counted = asked["succeeded"] + asked["failed"] + asked["cancelled"] + asked["stopping"]
    assert counted == COUNT
    ended = workload.wait_done(client, [job], 240)[job]
    reasons = {r["reason"]: r["count"] for r in ended["status"].get("failureReasons") or ()}
    assert set(reasons) <= {"Cancelled"}, reasons
    assert reasons.get("Cancelled", 0) >= 1, "the cancel came after every item had finished"
    final = run_json(cli, "cancel", job)
    assert final["finished"] and final["cancelled_at"] == asked["cancelled_at"]
    assert final["succeeded"] + final["cancelled"] == COUNT
    assert final["cancelled"] == reasons["Cancelled"]

    retry = run_json(cli, "retry", job)

    # An item stopped after its upload was claimed (past its render) cannot be retried
    # from that upload: reported, not retried. On a loaded machine every cancelled item
    # may have been in hand by then; the API's tests retry unclaimed ones for certain.
    assert {(s["reason"], s["skipped"]) for s in retry["skipped"]} <= {("Cancelled", "upload_gone")}
    assert len(retry["items"]) + len(retry["skipped"]) == final["cancelled"]
    assert bool(retry["name"]) == bool(retry["items"])
    again = run_json(cli, "retry", job)["name"]
    assert again == retry["name"]  # one retry per job
    if retry["name"]:
        case.jobs.append(retry["name"])
    findings = assess(case, 300)
    # Every item exactly one outcome, succeeded ones made, nothing live deleted, no
    # orphans; the only failures are the first job's cancelled items.
    problems = findings.problems(all_succeed=False)
    assert not problems, "\n".join(problems[:50])
    assert all(" failed: Cancelled:" in failure for failure in findings.failed), findings.failed
    if retry["name"]:
        retried = findings.jobs[retry["name"]]["status"]
        assert (retried["phase"], retried["succeeded"]) == ("Succeeded", len(retry["items"]))
