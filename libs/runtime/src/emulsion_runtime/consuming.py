"""The one JetStream pull loop every consumer runs, with one fetch-error policy.

- A fetch that times out is an idle consumer, nothing more.
- A NATS error (the server away, a JetStream hiccup) is transient: logged, and the fetch
  is retried after a delay that doubles per failure up to a cap, reset by a good fetch.
- A deleted durable or stream is permanent: the loop ends with `ConsumerGone`, which the
  service turns into failing liveness and a non-zero exit; its restart recreates the
  durable (`messaging.ensure_jetstream` at start-up). nats-py hides the server's
  "Consumer Deleted" from a pull, so an idle loop also asks for the durable now and then.

A handler that raises leaves its message unacknowledged (JetStream delivers it again
after ack_wait); the loop goes on with the next one.

Every message delivered to the loop reaches the handler, including a late one: a fetch's
wait on the client and its pull request's expiry on the server end at about the same
moment, and the server's clock starts when the request arrives, later than the client's.
A message sent in between arrives after the fetch gave up; nats-py keeps it on the
subscription until the next fetch. While the loop waits for room (every slot busy) or
stops, such a message would have no handler and no heartbeat, and would come back after
ack_wait as a second delivery. So the loop hands them over while it waits, and at its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

log = logging.getLogger(__name__)

Handler = Callable[[Msg], Awaitable[None]]
# How many messages to fetch next; may wait for room (a worker with every slot busy).
Room = Callable[[], Awaitable[int]]


class ConsumerGone(RuntimeError):
    """The durable consumer (or its stream) no longer exists: this loop can never receive
    anything again. Not retried: the process ends, and its restart recreates the durable."""


@dataclass(frozen=True)
class FetchPolicy:
    # One fetch's wait; also the longest a stop waits for the fetch in progress.
    timeout: float = 1.0
    # Transient fetch errors: the first retry's delay, doubled per failure up to the cap.
    first_delay: float = 0.5
    max_delay: float = 10.0
    # How often an idle loop asks whether its durable still exists.
    check_interval: float = 5.0
    # How often a loop waiting for room looks for messages that arrived late.
    late_check: float = 0.25

    def delay(self, failures: int) -> float:
        """The wait before the retry after `failures` (>= 1) fetches failed in a row."""
        return float(min(self.max_delay, self.first_delay * 2 ** min(failures - 1, 64)))


def fixed(size: int) -> Room:
    async def room() -> int:
        return size

    return room


class PullLoop:
    """Fetches from the durable `durable` of `stream` and hands each message to `handle`."""

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        durable: str,
        handle: Handler,
        *,
        room: Room | int = 64,
        policy: FetchPolicy = FetchPolicy(),
    ) -> None:
        self.js = js
        self.stream = stream
        self.durable = durable
        self.handle = handle
        self.room = fixed(room) if isinstance(room, int) else room
        self.policy = policy
        self._subscription: JetStreamContext.PullSubscription | None = None

    @property
    def bound(self) -> bool:
        return self._subscription is not None

    async def bind(self) -> None:
        if self._subscription is None:
            self._subscription = await self.js.pull_subscribe_bind(
                durable=self.durable, stream=self.stream
            )

    async def run(self, stopping: asyncio.Event) -> None:
        """Fetch and handle until `stopping` is set (the batch in hand is finished) or the
        durable is gone (ConsumerGone)."""
        await self.bind()
        assert self._subscription is not None
        failures = 0
        checked = time.monotonic()
        try:
            while not stopping.is_set():
                size = await self._room_handling_late()
                if stopping.is_set():
                    return
                try:
                    batch = await self._subscription.fetch(max(size, 1), self.policy.timeout)
                except TimeoutError:  # nothing to fetch (nats' own TimeoutError is a subclass)
                    failures = 0
                    if time.monotonic() - checked > self.policy.check_interval:
                        checked = time.monotonic()
                        await self.check_consumer()
                    continue
                except (nats.errors.Error, OSError) as error:
                    await self.check_consumer()
                    failures += 1
                    delay = self.policy.delay(failures)
                    log.warning(
                        "fetching from %s failed (%d in a row); retrying in %.1f s: %s",
                        self.durable,
                        failures,
                        delay,
                        error,
                        extra={"stream": self.stream, "durable": self.durable},
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stopping.wait(), delay)
                    continue
                failures = 0
                for message in batch:
                    await self._handle(message)
        finally:
            await self._handle_late()
            subscription, self._subscription = self._subscription, None
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def _room_handling_late(self) -> int:
        """`room()`, handling messages that arrive late (see the module) while it waits."""
        waiting = asyncio.ensure_future(self.room())
        try:
            while True:
                done, _ = await asyncio.wait({waiting}, timeout=self.policy.late_check)
                await self._handle_late()
                if done:
                    return waiting.result()
        finally:
            waiting.cancel()

    async def _handle_late(self) -> None:
        """Handle the messages delivered for fetches that had already given up.

        nats-py keeps them only in its subscription's queue, which its own fetch drains
        first exactly so (nats-py's version is pinned in uv.lock, and
        tests/runtime/test_consuming.py catches a change); the status messages there
        answer expired requests.
        """
        subscription = self._subscription
        if subscription is None or subscription.pending_msgs == 0:
            return
        queue = subscription._sub._pending_queue
        while not queue.empty():
            message = queue.get_nowait()
            subscription._sub._pending_size -= len(message.data)
            if not JetStreamContext.is_status_msg(message):
                await self._handle(message)

    async def _handle(self, message: Msg) -> None:
        try:
            await self.handle(message)
        except Exception:
            # Left unacknowledged: JetStream delivers it again after ack_wait (or, on a
            # consumer with a backoff, after the backoff of its delivery count).
            log.exception(
                "could not handle a message from %s",
                self.durable,
                extra={"subject": message.subject},
            )

    async def check_consumer(self) -> None:
        """Raise ConsumerGone if the server says the durable is gone; anything else may pass."""
        try:
            await self.js.consumer_info(self.stream, self.durable)
        except NotFoundError as error:
            raise ConsumerGone(
                f"durable consumer {self.durable} of stream {self.stream} is gone"
            ) from error
        except Exception:
            return  # cannot tell now (NATS away): the fetch is simply retried
