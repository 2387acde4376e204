"""The one pull loop, against the real NATS server: messages are handled, a failing handler
leaves its message for redelivery, transient fetch errors are retried with a capped backoff,
a deleted durable or stream ends the loop with ConsumerGone, and a message delivered
after its fetch gave up is still handled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nats
import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig
from nats.js.errors import NotFoundError

from emulsion_contracts.wire import Lane
from emulsion_devstack.binaries import ensure_binary
from emulsion_devstack.processes import free_port, spawn, stop, wait_until
from emulsion_devstack.stack import Endpoints
from emulsion_runtime.consuming import ConsumerGone, FetchPolicy, PullLoop
from tests.faults.proxy import Hold, Proxy

QUICK = FetchPolicy(timeout=0.2, first_delay=0.05, max_delay=0.2, check_interval=0.2)
DEADLINE = 15.0


@given(
    failures=st.integers(min_value=1, max_value=10_000),
    first=st.floats(min_value=0.001, max_value=5),
    cap=st.floats(min_value=5, max_value=120),
)
def test_the_retry_delay_grows_from_the_first_and_never_passes_the_cap(
    failures: int, first: float, cap: float
) -> None:
    policy = FetchPolicy(first_delay=first, max_delay=cap)
    assert policy.delay(1) == first
    assert first <= policy.delay(failures) <= cap
    assert policy.delay(failures) <= policy.delay(failures + 1)


@asynccontextmanager
async def durable(
    stack: Endpoints | str,
) -> AsyncIterator[tuple[JetStreamContext, str, str]]:
    """A stream and durable of this test's own, removed afterwards if still there; on
    the stack's NATS (as its admin), or on the plain server at a URL."""
    name = f"PULL_{uuid.uuid4().hex[:8].upper()}"
    if isinstance(stack, str):
        connection = await nats.connect(stack, connect_timeout=5)
    else:
        connection = await stack.nats_connect(connect_timeout=5)
    js = connection.jetstream()
    try:
        await js.add_stream(StreamConfig(name=name, subjects=[f"{name.lower()}.>"]))
        await js.add_consumer(
            name, ConsumerConfig(durable_name="d", ack_policy=AckPolicy.EXPLICIT, ack_wait=1.0)
        )
        yield js, name, "d"
    finally:
        with contextlib.suppress(NotFoundError):  # the test deleted it itself
            await js.delete_stream(name)
        await connection.drain()


@pytest.fixture
def plain_nats(tmp_path: Path) -> Iterator[str]:
    """A JetStream server without TLS or users, on 127.0.0.1, for this module's proxy test."""
    port = free_port()
    record = spawn(
        "nats-server",
        [
            str(ensure_binary("nats-server")),
            "--addr", "127.0.0.1", "--port", str(port),
            "--jetstream", "--store_dir", str(tmp_path / "js"),
        ],
        tmp_path / "nats-server.log",
    )  # fmt: skip
    try:
        wait_until(record, lambda: _accepts(port), DEADLINE)
        yield f"nats://127.0.0.1:{port}"
    finally:
        stop(record)


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


async def until(what: str, event: asyncio.Event) -> None:
    try:
        await asyncio.wait_for(event.wait(), DEADLINE)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def test_messages_are_handled_and_a_failing_handler_leaves_its_message_for_redelivery(
    stack: Endpoints, run: Any
) -> None:
    async def body() -> list[tuple[bytes, int]]:
        async with durable(stack) as (js, stream, name):
            seen: list[tuple[bytes, int]] = []
            redelivered = asyncio.Event()

            async def handle(message: Msg) -> None:
                seen.append((message.data, message.metadata.num_delivered or 0))
                if (b"b", 2) in seen:
                    redelivered.set()
                if message.data == b"b" and message.metadata.num_delivered == 1:
                    raise RuntimeError("the handler's own failure")
                await message.ack()

            for data in (b"a", b"b", b"c"):
                await js.publish(f"{stream.lower()}.x", data)
            stopping = asyncio.Event()
            loop = PullLoop(js, stream, name, handle, room=2, policy=QUICK)
            task = asyncio.create_task(loop.run(stopping))
            await until("b's redelivery", redelivered)
            assert loop.bound
            stopping.set()
            await asyncio.wait_for(task, DEADLINE)
            assert not loop.bound
            return seen

    assert sorted(run(body())) == [(b"a", 1), (b"b", 1), (b"b", 2), (b"c", 1)]


@pytest.mark.parametrize("removed", ["durable", "stream"])
def test_a_deleted_durable_or_stream_ends_the_loop_with_consumer_gone(
    stack: Endpoints, run: Any, removed: str
) -> None:
    async def body() -> None:
        async with durable(stack) as (js, stream, name):
            loop = PullLoop(js, stream, name, lambda message: message.ack(), policy=QUICK)
            await loop.bind()
            task = asyncio.create_task(loop.run(asyncio.Event()))
            if removed == "durable":
                await js.delete_consumer(stream, name)
            else:
                await js.delete_stream(stream)
            with pytest.raises(ConsumerGone, match=name):
                await asyncio.wait_for(task, DEADLINE)

    run(body())


def test_transient_fetch_errors_are_logged_and_retried_with_backoff(
    stack: Endpoints, run: Any
) -> None:
    async def body() -> None:
        connection = await stack.nats_connect(connect_timeout=5)
        try:
            # No JetStream answers under this prefix: every fetch fails with "no responders",
            # and whether the durable exists cannot be told either.
            js = connection.jetstream(prefix="$JS.NOBODY.API")
            handled: Callable[[Msg], Awaitable[None]] = lambda message: message.ack()  # noqa: E731
            stopping = asyncio.Event()
            loop = PullLoop(js, "S", "d", handled, policy=QUICK)
            task = asyncio.create_task(loop.run(stopping))
            await until("three retries", three_retries)
            assert not task.done()  # transient: the loop keeps going
            stopping.set()
            await asyncio.wait_for(task, DEADLINE)
        finally:
            await connection.drain()

    retries: list[logging.LogRecord] = []
    three_retries = asyncio.Event()

    class Retries(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "retrying in" in record.getMessage():
                retries.append(record)
            if len(retries) >= 3:
                three_retries.set()

    logger = logging.getLogger("emulsion_runtime.consuming")
    counting = Retries()
    logger.addHandler(counting)
    try:
        run(body())
    finally:
        logger.removeHandler(counting)
    delays = [record.args[2] for record in retries if isinstance(record.args, tuple)]
    assert delays[:3] == [0.05, 0.1, 0.2]


def test_a_message_delivered_after_its_fetch_gave_up_is_handled_while_the_loop_waits_for_room(
    stack: Endpoints, plain_nats: str, run: Any
) -> None:
    """The late delivery made exact: the fetch's pull request is held on its way to the
    server until the fetch has given up, so the server's answer reaches a loop that is
    waiting for room (every slot busy). It must be handled then, once, not lie unseen
    until ack_wait brings it back."""
    # (`stack` marks the test as one needing the stack's binaries, like its neighbours.)
    # The proxy reads NATS protocol lines, which the stack's NATS hides under TLS: a plain
    # JetStream server of this test's own (no users; the pull loop is what is tested).
    server = urlsplit(plain_nats)
    assert server.hostname is not None and server.port is not None
    proxy = Proxy(server.hostname, server.port, "nats")
    pull = proxy.arm(Hold(rb"PUB \$JS\.API\.CONSUMER\.MSG\.NEXT", release_after=QUICK.timeout * 4))

    async def body() -> list[tuple[bytes, int]]:
        async with durable(plain_nats) as (setup, stream, name):
            await setup.publish(f"{stream.lower()}.x", b"late")
            connection = await nats.connect(f"nats://127.0.0.1:{proxy.port}", connect_timeout=5)
            seen: list[tuple[bytes, int]] = []
            handled = asyncio.Event()
            stopping = asyncio.Event()
            fetches = 0

            async def room() -> int:
                # One fetch, then no room again until the test ends.
                nonlocal fetches
                fetches += 1
                if fetches > 1:
                    await stopping.wait()
                return 1

            async def handle(message: Msg) -> None:
                seen.append((message.data, message.metadata.num_delivered or 0))
                await message.ack()
                handled.set()

            try:
                loop = PullLoop(
                    connection.jetstream(), stream, name, handle, room=room, policy=QUICK
                )
                task = asyncio.create_task(loop.run(stopping))
                await until("the late message handled", handled)
                assert fetches == 2  # it came while the loop waited for room
                stopping.set()
                await asyncio.wait_for(task, DEADLINE)
            finally:
                await connection.drain()
            return seen

    try:
        seen = run(body())
    finally:
        proxy.close()
    assert pull.released.is_set()
    assert seen == [(b"late", 1)]


def test_lanes_interactive_first_bulk_its_share_and_an_idle_loop_takes_new_work(
    stack: Endpoints, run: Any
) -> None:
    """A durable per lane: each free slot takes interactive work first, one grant in
    four goes to bulk while both wait; idle, the loop waits (no busy loop) and takes an
    interactive item published meanwhile within the fetch timeout."""

    async def body() -> tuple[list[str], float, int]:
        name = f"LANES_{uuid.uuid4().hex[:8].upper()}"
        connection = await stack.nats_connect(connect_timeout=5)
        js = connection.jetstream()
        lanes = {Lane.INTERACTIVE: "i", Lane.BULK: "b"}
        try:
            await js.add_stream(StreamConfig(name=name, subjects=[f"{name.lower()}.>"]))
            for durable in lanes.values():
                await js.add_consumer(
                    name,
                    ConsumerConfig(
                        durable_name=durable,
                        ack_policy=AckPolicy.EXPLICIT,
                        filter_subject=f"{name.lower()}.{durable}",
                    ),
                )
            for n in range(4):
                await js.publish(f"{name.lower()}.b", f"b{n}".encode())
            for n in range(6):
                await js.publish(f"{name.lower()}.i", f"i{n}".encode())
            seen: list[str] = []
            late = asyncio.Event()
            fetches = 0

            async def handle(message: Msg) -> None:
                seen.append(message.data.decode())
                if message.data == b"late":
                    late.set()
                await message.ack()

            loop = PullLoop(js, name, lanes, handle, room=1, policy=QUICK)
            original = loop._fetch

            async def counted(size: int) -> list[Msg]:
                nonlocal fetches
                fetches += 1
                return await original(size)

            loop._fetch = counted  # type: ignore[method-assign]
            stopping = asyncio.Event()
            task = asyncio.create_task(loop.run(stopping))
            await until_async("every queued item", lambda: len(seen) == 10)
            # Idle for a second: rounds of one fetch timeout each, not a busy loop.
            before = fetches
            await asyncio.sleep(1.0)
            idle_rounds = fetches - before
            published = asyncio.get_running_loop().time()
            await js.publish(f"{name.lower()}.i", b"late")
            await until("the late interactive item", late)
            taken_after = asyncio.get_running_loop().time() - published
            stopping.set()
            await asyncio.wait_for(task, DEADLINE)
            return seen, taken_after, idle_rounds
        finally:
            with contextlib.suppress(NotFoundError):
                await js.delete_stream(name)
            await connection.drain()

    seen, taken_after, idle_rounds = run(body())
    assert seen[:10] == ["i0", "i1", "i2", "b0", "i3", "i4", "i5", "b1", "b2", "b3"]
    assert taken_after < QUICK.timeout + 1.0
    assert idle_rounds <= 1.0 / QUICK.timeout + 1


async def until_async(what: str, condition: Callable[[], bool]) -> None:
    deadline = asyncio.get_running_loop().time() + DEADLINE
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)  # a poll of this test's own list, not of a server
