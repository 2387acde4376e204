"""A NATS cluster of three under the stack: `make up NATS=3`'s servers, every
stream and bucket at R3, and losing the work stream's leader loses no acknowledged work.

The cluster runs on its own loopback addresses (stack.NATS_CLUSTER_ADDRESSES) with the
same ports, each server a process the test can stop by name. Publishes go on while the
leader is down; every message acknowledged by JetStream, before, during and after the
loss, is fetched exactly once by the processors' durable.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats.errors
import pytest

from emulsion_contracts import wire
from emulsion_devstack.stack import NATS_CLUSTER_ADDRESSES, Endpoints, LocalStack, nats_monitor_of
from emulsion_runtime import messaging

# Long enough for a new leader election on two busy cores (RAFT elects in ~2-5 s).
ELECTION_DEADLINE = 60.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[LocalStack, Endpoints]]:
    stack = LocalStack(tmp_path_factory.mktemp("nats3"), say=lambda line: None, nats_servers=3)
    try:
        yield stack, stack.up()
    finally:
        stack.down()


def jsz(monitor: str, **query: str) -> dict[str, Any]:
    params = "&".join(f"{key}={value}" for key, value in query.items())
    # The stack's own http:// monitoring URL.
    with urllib.request.urlopen(f"{monitor}/jsz?{params}", timeout=5) as response:  # noqa: S310
        report: dict[str, Any] = json.load(response)
    return report


def stream_leader(endpoints: Endpoints, stream: str) -> str:
    """The process name (`nats-server-<n>`) of the stream's current leader."""

    async def ask() -> str:
        connection = await endpoints.nats_connect()
        try:
            info = await connection.jetstream().stream_info(stream)
            assert info.cluster is not None and info.cluster.leader
            return str(info.cluster.leader)
        finally:
            await connection.close()

    server = asyncio.run(ask())  # e.g. "emulsion-local-2"
    return f"nats-server-{server.rsplit('-', 1)[1]}"


def test_every_stream_and_bucket_is_replicated_three_times(
    cluster: tuple[LocalStack, Endpoints],
) -> None:
    _, endpoints = cluster
    assert endpoints.nats_url.count(",") == 2 and endpoints.jetstream_replicas == 3

    async def replicas() -> dict[str, int]:
        connection = await endpoints.nats_connect()
        try:
            js = connection.jetstream()
            names = [s.name for s in messaging.STREAMS]
            names += [b.stream for b in messaging.BUCKETS] + [wire.INGESTS_STREAM]
            found = {}
            for name in names:
                info = await js.stream_info(name)
                found[name] = info.config.num_replicas or 1
            return found
        finally:
            await connection.close()

    found = asyncio.run(replicas())
    assert set(found.values()) == {3}, found
    # Each server reports the same meta leader: one cluster, not three.
    leaders = {
        jsz(nats_monitor_of(f"nats-server-{n}", endpoints.nats_monitor_url))["meta_cluster"][
            "leader"
        ]
        for n in range(1, len(NATS_CLUSTER_ADDRESSES) + 1)
    }
    assert len(leaders) == 1 and leaders != {""}


def lose(stack: LocalStack, name: str, how: str) -> None:
    """`stopped`: SIGTERM, the server hands its leaderships over as it goes; `killed`:
    SIGKILL, the others elect a leader once its heartbeats are missed."""
    if how == "killed":
        os.killpg(stack.record(name).pid, signal.SIGKILL)
    stack.stop(name, 5.0)


@pytest.mark.parametrize("how", ["stopped", "killed"])
def test_losing_the_work_streams_leader_loses_no_acknowledged_work(
    cluster: tuple[LocalStack, Endpoints], how: str
) -> None:
    stack, endpoints = cluster
    subject = wire.work_subject("scaleout", f"leader-{how}")
    leader = stream_leader(endpoints, wire.WORK_STREAM)

    async def publish(js: Any, first: int, count: int, acked: set[int]) -> None:
        """Publish until each of `count` messages is acknowledged (retrying through the
        election, as the controller does: the same Nats-Msg-Id, so never twice)."""
        deadline = time.monotonic() + ELECTION_DEADLINE
        for index in range(first, first + count):
            while True:
                try:
                    await js.publish(
                        subject,
                        json.dumps({"index": index}).encode(),
                        headers={wire.HEADER_MSG_ID: f"leader-{how}/{index}"},
                        timeout=2,
                    )
                    acked.add(index)
                    break
                except Exception:
                    assert time.monotonic() < deadline, f"no publish for {ELECTION_DEADLINE} s"
                    await asyncio.sleep(0.2)  # the election is the wait; a poll, not a test wait

    async def scenario() -> tuple[set[int], list[int]]:
        connection = await endpoints.nats_connect(
            max_reconnect_attempts=-1, reconnect_time_wait=0.2
        )
        acked: set[int] = set()
        try:
            js = connection.jetstream()
            await publish(js, 0, 20, acked)
            await asyncio.to_thread(lose, stack, leader, how)
            await publish(js, 20, 20, acked)
            await asyncio.to_thread(stack.start, leader)
            await publish(js, 40, 20, acked)
            fetched: list[int] = []
            consumer = await js.pull_subscribe_bind(
                durable=wire.PROCESSORS, stream=wire.WORK_STREAM
            )
            deadline = time.monotonic() + ELECTION_DEADLINE
            while len(fetched) < len(acked) and time.monotonic() < deadline:
                try:
                    batch = await consumer.fetch(20, timeout=2)
                except TimeoutError:
                    continue
                except nats.errors.Error:
                    # 503 while the consumer's leader is elected after the restart; the
                    # services' pull loop waits it out the same way.
                    await asyncio.sleep(0.2)  # a poll of the election, not a test wait
                    continue
                for message in batch:
                    fetched.append(json.loads(message.data)["index"])
                    await message.ack()
            return acked, fetched
        finally:
            await connection.close()

    acked, fetched = asyncio.run(scenario())
    assert acked == set(range(60))
    assert sorted(fetched) == sorted(acked), "every acknowledged message, exactly once"
    assert stream_leader(endpoints, wire.WORK_STREAM).startswith("nats-server-")
    assert Path(stack.record(leader).log).exists()
