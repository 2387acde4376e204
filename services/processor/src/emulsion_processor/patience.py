"""Transient trouble waited out, against one item's outage budget.

Transient trouble (storage, NATS KV, scratch space) is waited out where it happens, with
the message kept in hand by the delivery's in-progress heartbeats, instead of being given
back: every nak counts against the consumer's `max_deliver`, a budget that exists for
poison messages (ones that crash or wedge the worker on every delivery). A stopped MinIO
answers at once, so naks on each refusal used to spend the five deliveries in 75 s and
fail every item in hand for good. Each step is idempotent (keys embed the version,
commits are conditional), so a step is simply repeated; the wait ends with
`OutageTooLong` when the item's budget is spent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from typing import Final, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from emulsion_contracts import wire
from emulsion_processor import metrics
from emulsion_processor.errors import OutageTooLong, TransientTrouble
from emulsion_processor.settings import ProcessorSettings
from emulsion_runtime import telemetry

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_RETRY_DELAY: Final = 300.0
# Errors that say nothing about the item itself: wait them out and try the step again.
TRANSIENT_ERRORS: Final = (
    TransientTrouble,
    ClientError,
    BotoCoreError,
    NatsError,
    asyncio.TimeoutError,
    OSError,
)


def retry_delay(base: float, attempt: int, cap: float = MAX_RETRY_DELAY) -> float:
    return min(cap, base * 2.0 ** max(0, attempt - 1))


@dataclass(slots=True)
class Patience:
    """One item's waiting out of transient trouble, against the outage budget."""

    budget: float
    waited: float = 0.0
    retries: int = 0


_patience: ContextVar[Patience | None] = ContextVar("patience", default=None)


def begin(budget: float) -> Patience:
    """A fresh budget for the item this task works on (each task has its own context)."""
    patience = Patience(budget)
    _patience.set(patience)
    return patience


async def patiently(what: str, call: Callable[[], Awaitable[T]], settings: ProcessorSettings) -> T:
    """`call()`, tried again on transient trouble with capped exponential backoff."""
    patience = _patience.get() or begin(settings.outage_budget_seconds)
    while True:
        try:
            return await call()
        except TRANSIENT_ERRORS as error:
            problem = f"{type(error).__name__}: {error}"
            delay = retry_delay(
                settings.retry_delay_seconds, patience.retries + 1, settings.retry_max_delay_seconds
            )
            if patience.waited + delay > patience.budget:
                raise OutageTooLong(
                    f"{what} still failing after {patience.waited:.0f}s of retries "
                    f"(outage budget {patience.budget:.0f}s); last error: {problem}"
                ) from None
            log.warning("%s failed, retrying in %.1fs: %s", what, delay, problem)
            metrics.TRANSIENT_RETRIES.labels(what).inc()
            patience.retries += 1
            patience.waited += delay
            await asyncio.sleep(delay)


async def publish(
    js: JetStreamContext, subject: str, payload: bytes, msg_id: str, settings: ProcessorSettings
) -> None:
    """Publish patiently: deduplicated by Nats-Msg-Id, a publish that timed out may simply
    be repeated."""
    headers = telemetry.message_headers(subject, {wire.HEADER_MSG_ID: msg_id})
    await patiently("publish", partial(js.publish, subject, payload, headers=headers), settings)
