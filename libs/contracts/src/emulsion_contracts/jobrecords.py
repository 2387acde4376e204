"""What an IngestJob keeps outside etcd: its item list, its outcomes, its failures, its end.

An IngestJob used to carry every item in its spec (up to 2,000, ~530 KB) and every
outcome as index ranges in its status, rewritten as a new etcd revision at each status
write. etcd holds objects of a few KB well and a cluster's worth of large ones badly (its
quota stops writes for the whole cluster), so the object is now small and bounded — the
user's handle: counts, phase, conditions, a few example failures — and what grows with
the job lives in JetStream, the store every service already has:

- **the item list**: an object in the object store EMULSION_INGESTS named
  `<namespace>/<job>`, written by the API before it creates the job; the spec names it
  and its SHA-256 (`ItemsRef`), so a reader checks it got exactly what was accepted.
- **the outcomes** (`OutcomeRecord`): which items succeeded and failed, and why, as index
  ranges; written by the controller with compare-and-set before the status write that
  counts them, so a crash or a second replica loses nothing (see
  `emulsion_runtime.records_store.JobRecords.write_outcomes`).
- **each failure** (`FailureDetail`): the asset, the reason and the whole message, one
  key per failed item, written before that item's result is acknowledged; the API pages
  through them (`GET /v1/ingests/{name}/failures`).
- **the summary** (`JobSummaryRecord`): how the job ended, written when it finished, so
  the API can still answer for a job expired by its TTL (410 Gone, with what it made).
- **the feed cursor** (`FeedCursor`): of a bulk job, how many of its items the
  controller's feeder has published so far (it publishes them in index order, a window
  at a time); written after each publish, so a restarted controller goes on from there.
  Controller-only: the API never reads it.

Both stores keep everything for the records' retention (7 days by default, the chart's
`jobs.recordsRetentionSeconds`), which outlives a finished job's TTL by at least a day.
Every record carries the job's uid: a job made with kubectl may reuse a name, and a
record of another uid is someone else's (readers ignore it, the controller overwrites it).

This module holds the records and is the only place their keys and object names are built
or parsed; `emulsion_runtime.records_store` reads and writes them in JetStream.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field

from emulsion_contracts import indexes, wire
from emulsion_contracts.ingestjob import JobItem

__all__ = [
    "FailureDetail",
    "FeedCursor",
    "ItemsDocument",
    "JobSummaryRecord",
    "OutcomeRecord",
    "cursor_key",
    "encode_items",
    "failure_index",
    "failure_key",
    "failures_filter",
    "items_object_name",
    "outcomes_key",
    "summary_key",
]

# The longest failure message kept per item (the processor's messages are shorter).
FAILURE_MESSAGE_MAX: Final = 1024


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    def encode(self) -> bytes:
        return self.model_dump_json(exclude_none=True).encode()


# -- the item list ---------------------------------------------------------------------


class ItemsDocument(_Record):
    """The object's body: the items in order, as the API accepted them."""

    items: tuple[JobItem, ...]


def items_object_name(namespace: str, job: str) -> str:
    return f"{namespace}/{job}"


def encode_items(items: Sequence[JobItem]) -> bytes:
    """The canonical bytes of an item list: what is stored and what the digest covers."""
    return ItemsDocument(items=tuple(items)).encode()


# -- the records -----------------------------------------------------------------------


class OutcomeRecord(_Record):
    """Every finished item of one job: index ranges (see emulsion_contracts.indexes)."""

    uid: str
    total: Annotated[int, Field(ge=0)]
    succeeded: str = ""
    failed: str = ""
    # Failed indexes per reason.
    reasons: dict[str, str] = {}

    def succeeded_set(self) -> set[int]:
        return indexes.expand(self.succeeded)

    def failed_set(self) -> set[int]:
        return indexes.expand(self.failed)

    def reason_sets(self) -> dict[str, set[int]]:
        return {reason: indexes.expand(found) for reason, found in self.reasons.items()}


class FailureDetail(_Record):
    uid: str
    index: Annotated[int, Field(ge=0)]
    asset: str | None = None
    reason: str
    message: str | None = None
    # Deliveries the item had (the processor's count; the controller's for a lost result);
    # none in a record written before attempts were kept.
    attempts: int | None = None


class JobSummaryRecord(_Record):
    """How a job ended, kept past its TTL."""

    uid: str
    collection: str
    phase: str
    total: int
    succeeded: int
    failed: int
    version: str | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    # Failed items per reason.
    reasons: dict[str, int] = {}


class FeedCursor(_Record):
    """A bulk job's items `0 .. published - 1` have been published (see the feeder)."""

    uid: str
    published: Annotated[int, Field(ge=0)]


def job_prefix(namespace: str, job: str) -> str:
    # As in subjects: a Kubernetes name's '.' would split a key's tokens.
    token = wire.subject_token
    return f"{token(namespace)}.{token(job)}"


def outcomes_key(namespace: str, job: str) -> str:
    return f"{job_prefix(namespace, job)}.outcomes"


def summary_key(namespace: str, job: str) -> str:
    return f"{job_prefix(namespace, job)}.summary"


def cursor_key(namespace: str, job: str) -> str:
    return f"{job_prefix(namespace, job)}.cursor"


def failure_key(namespace: str, job: str, index: int) -> str:
    return f"{job_prefix(namespace, job)}.failures.{index}"


def failures_filter(namespace: str, job: str) -> str:
    return f"{job_prefix(namespace, job)}.failures.*"


def failure_index(key: str) -> int | None:
    """The item index a failure key names; None for any other key."""
    head, _, last = key.rpartition(".")
    if not head.endswith(".failures") or not last.isdigit():
        return None
    return int(last)
