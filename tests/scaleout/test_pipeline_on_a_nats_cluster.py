"""The whole pipeline on a NATS cluster of three: a gallery ingested while the
work stream's leader is killed at 30 to 40 % done and started again, judged by the fault
suite's one oracle (every item exactly one outcome, and succeeded; nothing live deleted;
nothing orphaned), plus: every stream and bucket back at R3 with all replicas current
within 60 s of the server's return, and the processors' consumer drained.

The services run as processes on the stack (as `make up NATS=3` runs them), with the fault
suite's short timings; NATS_URL lists all three servers, so a service whose server died
reconnects to another.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulsion_contracts import wire
from emulsion_devstack.processes import wait_for
from emulsion_devstack.stack import Endpoints, LocalStack
from emulsion_runtime import messaging
from tests.consumers import set_ack_wait
from tests.faults.oracle import Case, verify
from tests.faults.workload import Client, finished_items, gallery, ingest, read_job, upload
from tests.systems import endpoints_of

GALLERY = 120
GRACE_SECONDS = 4.0
ACK_WAIT_SECONDS = 4.0
RECOVERY_SECONDS = 60.0
System = tuple[LocalStack, Client, dict[str, str]]


@pytest.fixture(scope="module")
def system(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LocalStack, Client, dict[str, str]]]:
    root = tmp_path_factory.mktemp("pipeline-nats3")
    stack = LocalStack(
        root / "state",
        services=("api", "controller", "processor", "janitor"),
        say=lambda line: None,
        nats_servers=3,
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EMULSION_GC_GRACE_SECONDS", str(GRACE_SECONDS))
        patch.setenv("EMULSION_RETRY_DELAY_SECONDS", "1")
        patch.setenv("EMULSION_HEARTBEAT_SECONDS", "1")
        try:
            endpoints = stack.up()
            environment = stack.client_environment()
            client = Client.of(endpoints, environment["EMULSION_API_URL"])
            durables = (*wire.WORK_CONSUMERS.values(), wire.CONTROLLER)
            asyncio.run(set_ack_wait(endpoints, durables, ACK_WAIT_SECONDS))
            yield stack, client, environment
        finally:
            stack.down()


def all_current(endpoints: Endpoints) -> bool:
    """Every stream and bucket at R3, its replicas current; False while a stream is
    between leaders (its info request times out)."""
    try:
        return set(asyncio.run(replication(endpoints)).values()) == {"3/3"}
    except Exception:  # no leader yet for some stream: not recovered
        return False


async def replication(endpoints: Endpoints) -> dict[str, str]:
    """Each stream's replication as "<replicas>/<current>"."""
    connection = await endpoints.nats_connect()
    try:
        js = connection.jetstream()
        names = [s.name for s in messaging.STREAMS] + [b.stream for b in messaging.BUCKETS]
        found = {}
        for name in [*names, wire.INGESTS_STREAM]:
            info = await js.stream_info(name)
            cluster = info.cluster
            peers = [r for r in (cluster.replicas or []) if r.current and not r.offline]
            found[name] = f"{info.config.num_replicas}/{1 + len(peers)}"
        return found
    finally:
        await connection.close()


async def leader_of(endpoints: Endpoints, stream: str) -> str:
    connection = await endpoints.nats_connect()
    try:
        info = await connection.jetstream().stream_info(stream)
        assert info.cluster is not None and info.cluster.leader
        return f"nats-server-{str(info.cluster.leader).rsplit('-', 1)[1]}"
    finally:
        await connection.close()


async def pending_work(endpoints: Endpoints) -> int:
    connection = await endpoints.nats_connect()
    try:
        left = 0
        for durable in wire.WORK_CONSUMERS.values():
            info = await connection.jetstream().consumer_info(wire.WORK_STREAM, durable)
            left += int(info.num_pending or 0) + int(info.num_ack_pending or 0)
        return left
    finally:
        await connection.close()


@pytest.mark.timeout(600)
def test_the_work_streams_leader_killed_mid_gallery_loses_nothing(
    system: System, tmp_path: Path
) -> None:
    stack, client, environment = system
    endpoints = endpoints_of(stack)
    collection = "leader-killed"
    case = Case(client, environment, GRACE_SECONDS).watching(collection)
    staged = upload(client, collection, gallery(tmp_path / "g", GALLERY, seed=71))
    case.jobs += ingest(client, collection, staged)
    wait_for(
        "30 % of the gallery finished",
        lambda: sum(finished_items(read_job(client, job)) for job in case.jobs) >= 0.3 * GALLERY,
        timeout=300,
    )
    leader = asyncio.run(leader_of(endpoints, wire.WORK_STREAM))
    killed_at = time.monotonic()
    os.killpg(stack.record(leader).pid, signal.SIGKILL)
    stack.stop(leader, 0)
    stack.start(leader)
    wait_for(
        "every stream and bucket at R3 with all replicas current",
        lambda: all_current(endpoints),
        timeout=RECOVERY_SECONDS,
    )
    recovered = time.monotonic() - killed_at
    verify(case, timeout=420, all_succeed=True)
    assert asyncio.run(pending_work(endpoints)) == 0, "the processors' consumer drained"
    assert recovered < RECOVERY_SECONDS
