"""Items whose results never came: found from the streams, re-dispatched, then failed.

A result can be lost: a processor that acknowledged its work and died before publishing,
a result that aged out of the events stream (1 day) while the controller was away, a
message dropped by hand. Nothing else would ever end such an item, so its job would stay
Processing forever.

Why the streams and not the asset manifests: the controller talks to the apiserver and
NATS only, never to S3 (docs/architecture.md, "The parts"). The work stream is a work
queue, so a work message still in it is work still pending (waiting, in progress, being
retried, or out of deliveries and about to be reported by its advisory). An item that has
no outcome in its job's outcome record and no work message left has been taken and
finished, but its result is missing.

What is done about it, and why:
- Re-dispatch first, with a new `Nats-Msg-Id` (`<uid>/<index>/<suffix>`) so the stream's
  deduplication lets it through. Processors are idempotent by version: an item already
  committed reports success again (ALREADY), one that was never done is done now; a
  duplicate result is a no-op. So re-dispatching is always safe, while failing an item
  that had in fact succeeded would misreport it for good (the first outcome is final).
- Only after `redispatch_rounds` re-dispatches, each given the full deadline, is the item
  failed with reason `ResultLost`; and not while the controller's own result consumer
  still has a backlog, since the result may simply not have been read yet.
- Only items already published count: a bulk job's items beyond its feed cursor wait in
  the feeder (feeder.py), not lost. A re-dispatch goes to the job's own lane.
- The rounds are counted in memory. After a controller restart a job may be re-dispatched
  up to the budget again: more work, never a wrong outcome, and kept out of the job's
  status schema.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from emulsion_contracts import keys
from emulsion_contracts.ingestjob import IngestJob, InvalidSpec
from emulsion_contracts.messages import ItemResult
from emulsion_contracts.reasons import FailureReason
from emulsion_controller import metrics
from emulsion_controller.apiserver import Kube
from emulsion_controller.census import JobKey
from emulsion_controller.dispatch import work_messages
from emulsion_controller.feeder import Feeder
from emulsion_controller.jetstream import Bus
from emulsion_controller.outcomes import Outcomes
from emulsion_controller.settings import INTERACTIVE_MAX_ITEMS
from emulsion_controller.status_writer import StatusWriter

log = logging.getLogger(__name__)

# The channel its failures are held under (beside a result and an advisory of one item).
LOST_CHANNEL = "lost-results"


@dataclass
class Attempts:
    rounds: int
    at: float


@dataclass
class LostResults:
    """Finds the items of idle running jobs whose results never came; re-dispatches
    them, then fails them (see the module's note)."""

    kube: Kube
    bus: Bus
    writer: StatusWriter
    deadline: float
    rounds: int
    # A re-dispatch goes to the lane the job's work went to (dispatch.dispatch); with a
    # feeder, only items it has published count (the rest are still held back).
    interactive_max_items: int = INTERACTIVE_MAX_ITEMS
    feeder: Feeder | None = None
    attempts: dict[str, Attempts] = field(default_factory=dict)
    outcomes: Outcomes = field(init=False)

    def __post_init__(self) -> None:
        self.outcomes = Outcomes(self.bus)

    def due(self, key: JobKey) -> bool:
        """Whether this idle job's last re-dispatch (if any) has had its deadline."""
        attempt = self.attempts.get(key.uid)
        return attempt is None or time.monotonic() - attempt.at >= self.deadline

    def keep_only(self, running: set[JobKey]) -> None:
        """Forget the rounds of jobs that finished or went away."""
        uids = {key.uid for key in running}
        for uid in [uid for uid in self.attempts if uid not in uids]:
            del self.attempts[uid]

    async def check(self, key: JobKey) -> str:
        """Check one idle running job; returns what was done (for the log)."""
        if self.writer.holds_results(key.uid):
            return "results are waiting to be written"
        body = await self.kube.get_job(key.namespace, key.name)
        if body is None or body.get("metadata", {}).get("uid") != key.uid:
            return "job is gone"
        parsed = IngestJob.read(body)
        progress, _, _ = await self.outcomes.recorded_progress(parsed)
        version = progress.version
        if progress.done and not parsed.status.phase.finished:
            # The record ends the job but its last status write was lost (a crash after
            # the record, the results acknowledged): write it now.
            self.writer.catch_up(parsed.ref)
            return "its record is ahead of its status: written again"
        if not progress.dispatched or progress.done or version is None:
            return "not running"
        published = progress.total
        if self.feeder is not None:
            published = min(published, await self.feeder.published(parsed))
        missing = set(range(published)) - progress.succeeded - progress.failed
        lost = missing - await self.bus.queued_indexes(key.uid, key.namespace, key.name)
        if not lost:
            return "its remaining work is still queued"
        try:
            job = await self.bus.with_items(parsed)
        except InvalidSpec as error:
            return f"its item list cannot be read: {error}"
        attempt = self.attempts.get(key.uid) or Attempts(0, 0.0)
        if attempt.rounds < self.rounds:
            return await self._redispatch(key, job, version, lost, attempt)
        if await self.bus.results_backlog():
            return "results are still being read"
        self._fail(key, job, version, lost)
        self.attempts.pop(key.uid, None)
        return f"{len(lost)} items failed with {FailureReason.RESULT_LOST}"

    async def _redispatch(
        self,
        key: JobKey,
        job: IngestJob,
        version: str,
        lost: set[int],
        attempt: Attempts,
    ) -> str:
        rounds = attempt.rounds + 1
        suffix = f"r{rounds}-{keys.new_ulid()}"
        lane = (
            self.feeder.lane(job)
            if self.feeder is not None
            else job.spec.lane(self.interactive_max_items)
        )
        messages = work_messages(job, version, only=lost, msg_id_suffix=suffix, lane=lane)
        published = await self.bus.publish(messages)
        self.attempts[key.uid] = Attempts(rounds, time.monotonic())
        metrics.ITEMS_REDISPATCHED.inc(published)
        log.warning(
            "items without a result re-dispatched",
            extra={
                "namespace": key.namespace,
                "job": key.name,
                "items": _sample(lost),
                "round": rounds,
            },
        )
        return f"{published} items re-dispatched (round {rounds})"

    def _fail(self, key: JobKey, job: IngestJob, version: str, lost: set[int]) -> None:
        message = (
            f"no result after {self.rounds} re-dispatches; "
            "the work was taken but its result never arrived"
        )
        for index in sorted(lost):
            work = job.spec.work_item(job.ref, index, version)
            result = ItemResult.failed(work, FailureReason.RESULT_LOST, message, self.rounds + 1)
            self.writer.submit(result, _nothing_to_acknowledge, None, LOST_CHANNEL)
        metrics.ITEMS_LOST.inc(len(lost))
        log.error(
            "items failed: their results never arrived",
            extra={"namespace": key.namespace, "job": key.name, "items": _sample(lost)},
        )


async def _nothing_to_acknowledge() -> None:
    return None


def _sample(indexes: set[int], limit: int = 20) -> list[int]:
    return sorted(indexes)[:limit]
