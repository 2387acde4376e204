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

Lanes. Given a durable per lane (`wire.WORK_CONSUMERS`: the processors'), the same loop
shares each round's free slots between the lanes (`LaneChoice`: interactive first, one
grant in `bulk_every` to bulk while both wait, a lane alone gets every slot). JetStream
has no per-message priority, and a fetch cannot say "this durable, else that one", so
each round first asks both durables how many messages they have waiting (their
`num_pending`, one consumer-info call each), then fetches each lane's grant. A message
due for redelivery is not counted as pending, so slots left over go to a lane with
messages out (a short fetch), and an idle round looks at each lane in turn. When
neither lane has anything, the round waits in one lingering fetch, of each lane in turn,
for the fetch timeout: idle, the loop makes three requests a timeout, never a busy
loop, and new work in either lane is taken within about one fetch timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from emulsion_contracts.wire import Lane

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


@dataclass
class LaneChoice:
    """Which lane each free slot takes its next item from (no I/O: the pull loop asks).

    Interactive first; while both lanes have work waiting, one grant in `bulk_every`
    goes to bulk, so bulk keeps at least that share of the slots however much
    interactive work comes; a lane alone gets every slot (work-conserving).
    """

    bulk_every: int = 4
    # Grants made while both lanes waited, since bulk last had one of them.
    _since_bulk: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if self.bulk_every < 1:
            raise ValueError("bulk_every must be at least 1")

    def grant(self, waiting: Mapping[Lane, int]) -> Lane | None:
        """The lane of one free slot, given how many items each lane has waiting; None
        when neither has any."""
        lanes = [lane for lane in (Lane.INTERACTIVE, Lane.BULK) if waiting.get(lane, 0) > 0]
        if len(lanes) < 2:
            return lanes[0] if lanes else None
        if self._since_bulk + 1 >= self.bulk_every:
            self._since_bulk = 0
            return Lane.BULK
        self._since_bulk += 1
        return Lane.INTERACTIVE

    def grants(self, slots: int, waiting: Mapping[Lane, int]) -> dict[Lane, int]:
        """`slots` free slots shared out, one grant at a time, each lane's waiting items
        counted down as it is granted: how many to fetch from each lane."""
        left = {lane: max(0, waiting.get(lane, 0)) for lane in Lane}
        granted = dict.fromkeys(Lane, 0)
        for _ in range(slots):
            lane = self.grant(left)
            if lane is None:
                break
            granted[lane] += 1
            left[lane] -= 1
        return granted


def fixed(size: int) -> Room:
    async def room() -> int:
        return size

    return room


class PullLoop:
    """Fetches from the durable `durable` of `stream` and hands each message to `handle`.

    `durable` may instead name a durable per lane, with the `choice` that shares the free
    slots between them (see the module's note on lanes).
    """

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        durable: str | Mapping[Lane, str],
        handle: Handler,
        *,
        room: Room | int = 64,
        policy: FetchPolicy = FetchPolicy(),
        choice: LaneChoice | None = None,
    ) -> None:
        self.js = js
        self.stream = stream
        # Lane by lane, the asking order of an idle wait first (interactive).
        self.lanes: dict[Lane, str] = (
            {lane: durable[lane] for lane in (Lane.INTERACTIVE, Lane.BULK) if lane in durable}
            if isinstance(durable, Mapping)
            else {}
        )
        self.durables: tuple[str, ...] = (
            tuple(self.lanes.values()) if isinstance(durable, Mapping) else (durable,)
        )
        self.durable = ", ".join(self.durables)
        self.handle = handle
        self.room = fixed(room) if isinstance(room, int) else room
        self.policy = policy
        self.choice = choice or LaneChoice()
        self._idle_rounds = 0
        self._subscriptions: dict[str, JetStreamContext.PullSubscription] = {}

    @property
    def bound(self) -> bool:
        return bool(self._subscriptions)

    @property
    def _subscription(self) -> JetStreamContext.PullSubscription | None:
        """The first durable's subscription (the only one without lanes)."""
        return self._subscriptions.get(self.durables[0])

    async def bind(self) -> None:
        for durable in self.durables:
            if durable not in self._subscriptions:
                self._subscriptions[durable] = await self.js.pull_subscribe_bind(
                    durable=durable, stream=self.stream
                )

    async def _fetch(self, size: int) -> list[Msg]:
        """One round's messages; TimeoutError when there were none."""
        if not self.lanes:
            assert self._subscription is not None
            return await self._subscription.fetch(max(size, 1), self.policy.timeout)
        infos = {
            lane: await self.js.consumer_info(self.stream, durable)
            for lane, durable in self.lanes.items()
        }
        waiting = {lane: int(info.num_pending or 0) for lane, info in infos.items()}
        batch: list[Msg] = []
        for lane, count in self.choice.grants(max(size, 1), waiting).items():
            if count:
                batch += await self._take(lane, count, self.policy.timeout)
        spare = size - len(batch)
        if batch and spare > 0:
            # JetStream counts only never-delivered messages as pending: a lane whose
            # messages are out (in hand here or elsewhere) may have a redelivery due.
            for lane, info in infos.items():
                if spare > 0 and not waiting[lane] and info.num_ack_pending:
                    taken = await self._take(lane, spare, self.policy.late_check)
                    batch += taken
                    spare -= len(taken)
        if batch:
            return batch
        # Nothing waiting: one lingering fetch, on each lane in turn (interactive first).
        lanes = list(self.lanes.values())
        durable = lanes[self._idle_rounds % len(lanes)]
        self._idle_rounds += 1
        return await self._subscriptions[durable].fetch(max(size, 1), self.policy.timeout)

    async def _take(self, lane: Lane, count: int, wait: float) -> list[Msg]:
        """Up to `count` messages of `lane` (fewer when another consumer took them)."""
        try:
            return await self._subscriptions[self.lanes[lane]].fetch(count, wait)
        except TimeoutError:
            return []

    async def run(self, stopping: asyncio.Event) -> None:
        """Fetch and handle until `stopping` is set (the batch in hand is finished) or the
        durable is gone (ConsumerGone)."""
        await self.bind()
        assert self.bound
        failures = 0
        checked = time.monotonic()
        try:
            while not stopping.is_set():
                size = await self._room_handling_late()
                if stopping.is_set():
                    return
                try:
                    batch = await self._fetch(size)
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
            subscriptions, self._subscriptions = self._subscriptions, {}
            for subscription in subscriptions.values():
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
        for subscription in list(self._subscriptions.values()):
            if subscription.pending_msgs == 0:
                continue
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
        """Raise ConsumerGone if the server says a durable is gone; anything else may pass."""
        for durable in self.durables:
            try:
                await self.js.consumer_info(self.stream, durable)
            except NotFoundError as error:
                raise ConsumerGone(
                    f"durable consumer {durable} of stream {self.stream} is gone"
                ) from error
            except Exception:
                return  # cannot tell now (NATS away): the fetch is simply retried
