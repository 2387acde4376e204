"""A durable consumer's redelivery wait scaled down for one test on a shared stack (or
for a whole suite on a stack of its own: the fault suite).

JetStream redelivers an unacknowledged message after the consumer's AckWait (or its
BackOff step): 30 s and more for Emulsion's durables. A test of what happens on that
redelivery needs the redelivery, not the 30 s, so it shortens the wait on the live
consumer (the server applies a changed AckWait to messages already pending) and puts the
configuration of `messaging.CONSUMERS` back afterwards, for the tests that share the stack.

A controller started meanwhile puts the configured wait back itself (`ensure_jetstream`:
it is the bootstrap identity, the other services only bind), so shorten after the
controller a test starts is ready. The change is made as the devstack's admin identity
(`Endpoints.nats_connect`), as an operator would: no service may change a durable but the
controller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from emulsion_devstack.stack import Endpoints
from emulsion_runtime import messaging


async def set_ack_wait(stack: Endpoints, durables: Iterable[str], seconds: float | None) -> None:
    """Each of `durables` redelivers after `seconds` (its backoff doubling from there), or,
    with None, as `messaging.CONSUMERS` configures it."""
    wanted = set(durables)
    connection = await stack.nats_connect(connect_timeout=5)
    try:
        js = connection.jetstream()
        for spec in messaging.CONSUMERS:
            if spec.durable not in wanted:
                continue
            config = spec.config()
            if seconds is not None:
                config.ack_wait = seconds
                if spec.backoff:
                    config.backoff = [seconds * 2**n for n in range(len(spec.backoff))]
            await js.add_consumer(spec.stream, config)
    finally:
        await connection.close()


@contextmanager
def redelivered_after(stack: Endpoints, durable: str, seconds: float) -> Iterator[None]:
    """Within the block, `durable` redelivers after `seconds` (its backoff doubling from
    there) instead of its configured AckWait; afterwards, as configured again."""
    asyncio.run(set_ack_wait(stack, (durable,), seconds))
    try:
        yield
    finally:
        asyncio.run(set_ack_wait(stack, (durable,), None))
