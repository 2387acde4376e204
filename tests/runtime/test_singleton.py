"""One holder at a time of a role (emulsion_runtime.singleton), on the stack's NATS: of
replicas asking at once one works; a holder that stops hands over at once; one that dies
without a word is replaced once its lease expires; and no two ever work at the same time."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from nats.js.api import KeyValueConfig

from emulsion_devstack.stack import Endpoints
from emulsion_runtime import singleton

TTL = 2.0
RENEW = TTL / 4


@dataclass
class Ledger:
    """When each replica worked: (holder, began, ended)."""

    spans: list[tuple[str, float, float]] = field(default_factory=list)
    working: set[str] = field(default_factory=set)
    overlaps: int = 0

    def work(self, holder: str) -> singleton.Work:
        async def run(released: asyncio.Event) -> None:
            if self.working:
                self.overlaps += 1
            self.working.add(holder)
            began = time.monotonic()
            try:
                await released.wait()
            finally:
                self.working.discard(holder)
                self.spans.append((holder, began, time.monotonic()))

        return run


async def until(check: Any, deadline: float) -> float:
    """Seconds until `check()` holds; fails at the deadline."""
    began = time.monotonic()
    while not check():
        assert time.monotonic() - began < deadline, "not within the deadline"
        await asyncio.sleep(0.05)  # a poll of in-process state, not a wait for time to pass
    return time.monotonic() - began


def test_one_replica_at_a_time_and_hand_over(stack: Endpoints, run: Any) -> None:
    async def scenario() -> tuple[Ledger, float, float]:
        connection = await stack.nats_connect()
        js = connection.jetstream()
        bucket = f"TEST_SINGLETONS_{uuid.uuid4().hex[:8]}"
        kv = await js.create_key_value(KeyValueConfig(bucket=bucket, ttl=TTL, history=1))
        ledger = Ledger()
        stops = {name: asyncio.Event() for name in ("a", "b", "c")}

        def start(name: str) -> asyncio.Task[None]:
            return asyncio.create_task(
                singleton.run_while_held(
                    kv, "role", name, ledger.work(name), stops[name], renew_every=RENEW
                )
            )

        try:
            replicas = {name: start(name) for name in ("a", "b")}
            await until(lambda: len(ledger.working) == 1, 10)
            [first] = ledger.working
            second = "b" if first == "a" else "a"
            # The holder stops: it gives the role up, the other takes it at its next try.
            stops[first].set()
            await replicas[first]
            handed_over = await until(lambda: ledger.working == {second}, 10)
            # The holder dies without a word: a third replica waits for the lease to expire.
            replicas["c"] = start("c")
            replicas[second].cancel()
            await asyncio.gather(replicas[second], return_exceptions=True)
            expired = await until(lambda: ledger.working == {"c"}, 10)
            stops["c"].set()
            await replicas["c"]
            return ledger, handed_over, expired
        finally:
            for task in replicas.values():
                task.cancel()
            await js.delete_key_value(bucket)
            await connection.close()

    ledger, handed_over, expired = run(scenario())
    assert ledger.overlaps == 0
    spans = sorted(ledger.spans, key=lambda span: span[1])
    assert [holder for holder, _, _ in spans][-1] == "c" and len(spans) == 3
    assert all(earlier[2] <= later[1] for earlier, later in itertools.pairwise(spans))
    # Handing over takes at most one renewal period; a dead holder's lease, its TTL.
    assert handed_over < RENEW + 1.0
    assert expired < TTL + RENEW + 1.0
