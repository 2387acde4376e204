"""One holder at a time of a role shared by replicas: a lease in a KV bucket whose TTL
expires a holder that stopped renewing.

The janitor's sweeps are the first user: two janitor replicas (the chart lets the janitor
autoscale to two) both consumed GC requests — shared work, each request to one of them —
but both also swept staging/ every hour and both ran the full pass, each from the same
progress file, so every key was listed twice and the progress could step back. Now only
the holder of the role `janitor-sweeper` sweeps.

How: the role is a key of the bucket EMULSION_SINGLETONS, whose keys expire
`messaging.SINGLETON_TTL` after their last write. A replica takes the role by creating
the key (only one create succeeds), renews it every third of the TTL with
compare-and-set on the revision it wrote, and gives it up by deleting it when it stops, so
another replica takes over at its next try instead of after the TTL. A holder whose
renewal fails (NATS unreachable, or another replica holds the key: its lease expired)
stops its work at once and goes back to trying. A holder cut off from NATS while it still
works for up to the TTL can overlap with the next holder for that long: the role's work
must be safe to run twice (the janitor's is: every deletion passes its guards).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

log = logging.getLogger(__name__)

Work = Callable[[asyncio.Event], Coroutine[Any, Any, None]]


async def _until(event: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds` unless `event` is set first; True if it is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)
    return event.is_set()


async def run_while_held(
    kv: KeyValue,
    role: str,
    holder: str,
    work: Work,
    stopping: asyncio.Event,
    renew_every: float,
    on_change: Callable[[bool], None] = lambda held: None,
) -> None:
    """Run `work(released)` whenever this replica (`holder`) holds `role`, until
    `stopping`; `released` is set when the role is lost or the replica stops, and `work`
    must return soon after. `renew_every` must be well below the bucket's TTL."""
    while not stopping.is_set():
        try:
            revision = await kv.create(role, holder.encode())
        except KeyWrongLastSequenceError:
            revision = None  # another replica holds it
        except Exception:
            log.warning("could not ask for the role %s; trying again", role, exc_info=True)
            revision = None
        if revision is None:
            if await _until(stopping, renew_every):
                return
            continue
        log.info("holding the role %s", role, extra={"role": role, "holder": holder})
        on_change(True)
        released = asyncio.Event()
        task = asyncio.create_task(work(released), name=role)
        try:
            revision = await _hold(kv, role, holder, revision, stopping, task, renew_every)
        finally:
            released.set()
            on_change(False)
            with contextlib.suppress(Exception):
                await task
        if revision is not None:
            # Stopping while holding it: let another replica take over at once.
            with contextlib.suppress(Exception):
                await kv.delete(role, last=revision)
            log.info("gave up the role %s", role, extra={"role": role})
        # Lost, or the work ended: let another replica have a turn before asking again.
        if await _until(stopping, renew_every):
            return


async def _hold(
    kv: KeyValue,
    role: str,
    holder: str,
    revision: int,
    stopping: asyncio.Event,
    task: asyncio.Task[None],
    renew_every: float,
) -> int | None:
    """Renew until stopping (the revision last written) or until the role is lost or the
    work ended (None: not ours to delete, or nothing left to do)."""
    while True:
        done = asyncio.ensure_future(stopping.wait())
        finished, _ = await asyncio.wait({done, task}, timeout=renew_every)
        done.cancel()
        if stopping.is_set():
            return revision
        if task in finished:
            log.error("the work of the role %s ended while holding it", role)
            return revision
        try:
            revision = await kv.update(role, holder.encode(), last=revision)
        except Exception:
            log.warning("lost the role %s (its lease could not be renewed)", role, exc_info=True)
            return None
