"""A job's outcome record and summary in the records bucket (EMULSION_JOB_RECORDS).

The record holds which items finished, and is the truth about a job's items (its status
holds counts and examples only). It is read merged into the job's progress, written
compare-and-set on its revision, and on a conflict another writer's outcomes (a second
replica in a rollout, our own write before a restart) are read and merged first.
"""

from __future__ import annotations

from emulsion_contracts.ingestjob import IngestJob
from emulsion_contracts.jobrecords import OutcomeRecord
from emulsion_controller import metrics
from emulsion_controller.folding import TrackedJob
from emulsion_controller.jetstream import Bus, bounded
from emulsion_controller.progress import JobProgress
from emulsion_runtime.records_store import JobRecords, RecordConflict

# Conflicting writes in a row before giving up this round (the caller retries later).
CONFLICT_RETRIES = 5


class Outcomes:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    def _records(self) -> JobRecords:
        if self._bus.records is None:
            raise RuntimeError("the controller's bus was made without the records bucket")
        return self._bus.records

    async def recorded_progress(
        self, parsed: IngestJob
    ) -> tuple[JobProgress, OutcomeRecord | None, int | None]:
        """The job's progress as the apiserver and the records bucket know it: the status
        (conditions, times, a rejection; an older controller's index ranges, merged into
        the record once by the next write) with the outcome record merged in. Also the
        record as stored and its revision (None: no record yet)."""
        progress = JobProgress.from_job(parsed)
        ref = parsed.ref
        stored, revision = await self._records().outcomes(ref.namespace, ref.name, ref.uid)
        if stored is not None:
            progress.merge_record(stored)
        return progress, stored, revision

    async def store(self, job: TrackedJob) -> None:
        """Write the failures folded since the last write, then the outcome record.

        Compare-and-set on the record's revision: another writer's outcomes (a second
        replica in a rollout, our own write before a restart) are read and merged, the
        recorded outcome of an index winning as in JobProgress.merge, then written again.
        """
        assert job.progress is not None
        records = self._records()
        details = job.details
        await bounded(records.put_failure(job.namespace, job.name, d) for d in details.values())
        for index in list(details):
            job.details.pop(index, None)
        for _ in range(CONFLICT_RETRIES):
            record = job.progress.outcome_record(job.uid)
            if record == job.recorded:
                return
            try:
                job.record_revision = await records.write_outcomes(
                    job.namespace, job.name, record, job.record_revision
                )
            except RecordConflict:
                metrics.RECORD_CONFLICTS.inc()
                stored, job.record_revision = await records.outcomes(
                    job.namespace, job.name, job.uid
                )
                if stored is not None:
                    job.progress.merge_record(stored)
                continue
            job.recorded = record
            return
        raise RuntimeError(f"outcomes of {job.namespace}/{job.name} kept changing under us")

    async def summarise(self, job: TrackedJob) -> None:
        """How the job ended, for the API to tell once the job expired (idempotent)."""
        assert job.progress is not None
        summary = job.progress.summary(job.uid, job.collection)
        await self._records().put_summary(job.namespace, job.name, summary)
