"""SIGKILL the controller between a job's creation and its dispatch, between an item's
result and the status write that records it, and while it feeds a bulk job a window at a
time; SIGKILL the janitor in the middle of a batch.
"""

from __future__ import annotations

import asyncio
import re
import signal
from pathlib import Path

import pytest

from emulsion_contracts import wire
from emulsion_devstack.processes import wait_for
from emulsion_devstack.stack import Endpoints
from tests.faults.conftest import FEED_HIGH_WATER, FaultStack
from tests.faults.oracle import list_keys, verify
from tests.faults.proxy import Hold
from tests.faults.workload import finished_items, gallery, ingest, read_job, upload

ITEMS = 12
FED_ITEMS = 24  # a bulk job: fed FEED_HIGH_WATER items at a time
JANITOR_ITEMS = 8  # two jobs of these: every asset superseded once
DEADLINE = 150


def _restart(fault: FaultStack, name: str) -> None:
    fault.stack.kill(name, signal.SIGKILL)
    fault.start(name)


def _results_delivered_unacked(endpoints: Endpoints) -> int:
    """Item results the controller has taken from the stream and not yet acknowledged."""

    async def ask() -> int:
        connection = await endpoints.nats_connect(connect_timeout=5)
        try:
            info = await connection.jetstream().consumer_info(wire.EVENTS_STREAM, wire.CONTROLLER)
            return int(info.num_ack_pending)
        finally:
            await connection.close()

    return asyncio.run(ask())


@pytest.mark.timeout(DEADLINE + 30)
def test_controller_killed_between_create_and_dispatch(fault: FaultStack, tmp_path: Path) -> None:
    case = fault.case().watching("ctl-dispatch")
    # The controller's first work message never reaches NATS (its leases may have).
    hold = fault.proxy("controller", "nats").arm(Hold(rb"PUB emulsion\.work\."))
    staged = upload(fault.client, "ctl-dispatch", gallery(tmp_path / "g", ITEMS, seed=21))
    case.jobs += ingest(fault.client, "ctl-dispatch", staged)
    hold.wait(60)
    assert finished_items(read_job(fault.client, case.jobs[0])) == 0
    _restart(fault, "controller")
    verify(case, timeout=DEADLINE, all_succeed=True)


@pytest.mark.timeout(DEADLINE + 30)
def test_controller_killed_between_a_result_and_its_status_write(
    fault: FaultStack, tmp_path: Path
) -> None:
    case = fault.case().watching("ctl-status")
    staged = upload(fault.client, "ctl-status", gallery(tmp_path / "g", ITEMS, seed=22))
    case.jobs += ingest(fault.client, "ctl-status", staged)
    [job] = case.jobs
    wait_for(
        "the job dispatched",
        lambda: (read_job(fault.client, job).get("status") or {}).get("version"),
        timeout=60,
    )
    # From now on nothing the controller sends reaches the apiserver: results come in,
    # their status writes do not go out.
    fault.proxy("controller", "kube").hold_all()
    endpoints = fault.endpoints()
    wait_for(
        "results taken by the controller and held unacknowledged",
        lambda: _results_delivered_unacked(endpoints),
        timeout=90,
    )
    assert finished_items(read_job(fault.client, job)) == 0
    fault.proxy("controller", "kube").disarm()
    _restart(fault, "controller")
    verify(case, timeout=DEADLINE, all_succeed=True)


@pytest.mark.timeout(DEADLINE + 30)
def test_controller_killed_mid_feed(fault: FaultStack, tmp_path: Path) -> None:
    case = fault.case().watching("ctl-feed")
    # The first window goes out; the controller's next work message (sent only once a
    # result has freed room in the window) never reaches NATS. Waiting on status counts
    # instead raced: small photos finish faster than the status is written.
    hold = fault.proxy("controller", "nats").arm(
        Hold(rb"PUB emulsion\.work\.", skip=FEED_HIGH_WATER)
    )
    staged = upload(fault.client, "ctl-feed", gallery(tmp_path / "g", FED_ITEMS, seed=24))
    case.jobs += ingest(fault.client, "ctl-feed", staged)
    [job] = case.jobs
    hold.wait(90)
    assert finished_items(read_job(fault.client, job)) <= FEED_HIGH_WATER < FED_ITEMS
    _restart(fault, "controller")
    verify(case, timeout=DEADLINE, all_succeed=True)


@pytest.mark.timeout(DEADLINE + 60)
def test_janitor_killed_mid_batch(fault: FaultStack, tmp_path: Path) -> None:
    case = fault.case().watching("jan-batch")
    photos = gallery(tmp_path / "g", JANITOR_ITEMS, seed=23)
    names = [p.name for p in photos]
    case.jobs += ingest(fault.client, "jan-batch", upload(fault.client, "jan-batch", photos), names)
    first = case.jobs[0]
    wait_for(
        "the first version live",
        lambda: finished_items(read_job(fault.client, first)) == JANITOR_ITEMS,
        timeout=90,
    )
    # The janitor's first delete call goes through, the second stays in the proxy: it
    # dies with a batch of GC requests half done and unacknowledged.
    hold = fault.proxy("janitor", "s3").arm(
        Hold(rb"POST /" + re.escape(fault.client.bucket.encode()) + rb"\?delete", skip=1)
    )
    # The same photos ingested again: a later job's versions supersede every asset, and
    # the janitor has the old versions and the staging uploads to delete.
    case.jobs += ingest(fault.client, "jan-batch", upload(fault.client, "jan-batch", photos), names)
    hold.wait(90)
    _restart(fault, "janitor")
    assert list_keys(fault.client, "originals/jan-batch/")
    verify(case, timeout=DEADLINE, all_succeed=True)
