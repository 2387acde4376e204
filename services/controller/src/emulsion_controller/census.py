"""What the controller knows about every job from the watch: phase, and when to delete it.

Fed by one event handler with each job's latest state, so the jobs-by-phase gauge, the
TTL sweep and the lost-result sweep (which running job has not changed for how long)
need no listing of the (large) objects.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from emulsion_contracts.crd import Phase
from emulsion_contracts.ingestjob import JobOutline
from emulsion_controller import metrics


@dataclass(frozen=True)
class JobKey:
    namespace: str
    name: str
    uid: str


class Census:
    def __init__(self) -> None:
        self._phases: dict[JobKey, Phase] = {}
        self._expiry: dict[JobKey, datetime] = {}
        # Running (dispatched, unfinished) jobs: resourceVersion and when it last changed
        # (monotonic). A re-list after a watch restart repeats the version: no change.
        self._running: dict[JobKey, tuple[str, float]] = {}
        # Kept as counts, not recounted, so an event costs O(1) with thousands of jobs.
        self._counts: Counter[Phase] = Counter()

    def observe(self, body: Mapping[str, Any]) -> None:
        # The outline, not the whole job: this runs on every event of every job.
        job = JobOutline.read(body)
        key = _key(body)
        phase = job.status.phase
        self._count(self._phases.get(key), phase)
        self._phases[key] = phase
        expiry = _expiry(job)
        if expiry is None:
            self._expiry.pop(key, None)
        else:
            self._expiry[key] = expiry
        if phase in (Phase.QUEUED, Phase.PROCESSING):
            version = str(job.metadata.resource_version)
            seen = self._running.get(key)
            if seen is None or seen[0] != version:
                self._running[key] = (version, time.monotonic())
        else:
            self._running.pop(key, None)

    def forget(self, body: Mapping[str, Any]) -> None:
        key = _key(body)
        self._count(self._phases.pop(key, None), None)
        self._expiry.pop(key, None)
        self._running.pop(key, None)

    def idle(self, seconds: float) -> list[JobKey]:
        """Running jobs whose object has not changed for at least `seconds`."""
        now = time.monotonic()
        return [key for key, (_, since) in self._running.items() if now - since >= seconds]

    def running(self) -> set[JobKey]:
        return set(self._running)

    def expired(self, now: datetime) -> list[JobKey]:
        return [key for key, moment in self._expiry.items() if moment <= now]

    def by_phase(self) -> Counter[Phase]:
        return Counter(self._counts)

    def _count(self, old: Phase | None, new: Phase | None) -> None:
        if old == new:
            return
        if old is not None:
            self._counts[old] -= 1
            metrics.JOBS.labels(str(old)).set(self._counts[old])
        if new is not None:
            self._counts[new] += 1
            metrics.JOBS.labels(str(new)).set(self._counts[new])


def _key(body: Mapping[str, Any]) -> JobKey:
    metadata = body["metadata"]
    return JobKey(metadata["namespace"], metadata["name"], metadata["uid"])


def _expiry(job: JobOutline) -> datetime | None:
    ttl = job.spec.ttl_seconds_after_finished
    completed = job.status.completed_at
    if ttl is None or not job.status.phase.finished or not completed:
        return None
    if job.metadata.deletion_timestamp:
        return None
    return completed + timedelta(seconds=ttl)
