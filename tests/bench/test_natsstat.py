"""`make bench`'s NATS counts per phase: the server's own counters, read from its
monitoring port (on the real stack), and their difference per image."""

from __future__ import annotations

import asyncio

from emulsion_bench import natsstat
from emulsion_contracts import wire
from emulsion_devstack.stack import Endpoints


def test_a_phase_counts_the_difference_and_per_image() -> None:
    before = natsstat.Counters.parse({"in_msgs": 10, "out_msgs": 20}, {"api": {"total": 5}})
    after = natsstat.Counters.parse({"in_msgs": 410, "out_msgs": 820}, {"api": {"total": 105}})
    assert natsstat.figures(before, after, 100) == {
        "in_msgs": 400,
        "out_msgs": 800,
        "api_requests": 100,
        "in_msgs_per_image": 4.0,
        "out_msgs_per_image": 8.0,
        "api_requests_per_image": 1.0,
    }
    # A phase of no images (a notify phase counts requests instead) divides by nothing.
    assert natsstat.figures(before, after, 0)["in_msgs_per_image"] == 0.0


def test_a_server_without_jetstream_figures_counts_no_api_requests() -> None:
    assert natsstat.Counters.parse({}, {}) == natsstat.Counters(0, 0, 0)


def test_the_servers_counters_move_with_what_clients_do(stack: Endpoints) -> None:
    before = natsstat.read(stack.nats_monitor_url)

    async def work() -> None:
        connection = await stack.nats_connect()
        try:
            js = connection.jetstream()
            await js.stream_info(wire.WORK_STREAM)
            await connection.publish("capacity.natsstat", b"x")
            await connection.flush()
        finally:
            await connection.drain()

    asyncio.run(work())
    after = natsstat.read(stack.nats_monitor_url)
    counted = natsstat.figures(before, after, 1)
    assert counted["in_msgs"] >= 2  # the publish and the API request
    assert counted["api_requests"] >= 1
