"""The NATS wire's grammar: the only place subjects, message ids, stream, consumer and
bucket names, and lease and role keys are built or parsed.

Message ids decide JetStream's deduplication (`Nats-Msg-Id` within a stream's duplicate
window), so one form made in one service and read in another must never drift: every
service builds and reads them here, typed. `emulsion_contracts.keys` does the same for
object keys; `emulsion_runtime.messaging` declares the streams and consumers made of
these names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from emulsion_contracts import keys
from emulsion_contracts.messages import GcReason, JobRef

# Streams, and the durable consumers that read them.
WORK_STREAM: Final = "EMULSION_WORK"
EVENTS_STREAM: Final = "EMULSION_EVENTS"
GC_STREAM: Final = "EMULSION_GC"
# JetStream's own advisories are core NATS messages, lost if nobody listens at that moment;
# this stream keeps them, so a work item that ran out of deliveries while the controller
# was down is still reported as a failed item when it comes back.
ADVISORIES_STREAM: Final = "EMULSION_ADVISORIES"

# The work stream's two durables, one per lane (WORK_CONSUMERS): the bulk lane's keeps the
# name the single consumer had, so autoscaling, advisories and upgrades keep working.
PROCESSORS: Final = "processors"
PROCESSORS_INTERACTIVE: Final = "processors-interactive"
CONTROLLER: Final = "controller"
JANITOR: Final = "janitor"
CONTROLLER_ADVISORIES: Final = "controller-advisories"

# Headers. The message id is JetStream's deduplication key; a handed-back copy counts the
# deliveries its earlier copies had, so an item's `attempts` stays true.
HEADER_MSG_ID: Final = "Nats-Msg-Id"
HEADER_HANDED_BACK: Final = "Emulsion-Handed-Back-Deliveries"

# Key-value buckets (JetStream KV), shared state that must not need Kubernetes access:
# - cancelled jobs, keyed by job uid: the controller puts one when a running job is
#   deleted; processors skip (and never commit) items of a cancelled job.
# - staging leases, one per (upload id, job uid) (`staging_lease_key`): the controller puts
#   one per dispatched item and removes its own when the job ends; the janitor never
#   sweeps an upload that any job still leases. Two jobs of one upload hold two leases,
#   so the first to finish cannot release the other's.
# - the version clock (`emulsion_runtime.clock`): one key, the last millisecond any
#   version was minted at, so versions from replicas with different clocks still sort in
#   the order they were minted. No TTL: losing it would let a slow clock mint the past.
CANCELLED_BUCKET: Final = "EMULSION_CANCELLED"
STAGING_LEASES_BUCKET: Final = "EMULSION_STAGING_LEASES"
CLOCK_BUCKET: Final = "EMULSION_CLOCK"
# What an IngestJob keeps outside etcd (emulsion_contracts.jobrecords): its item list in
# an object store, its outcomes, failures and summary in a KV bucket, both kept for the
# records' retention (JetStreamSettings.records_retention_seconds).
INGESTS_STORE: Final = "EMULSION_INGESTS"
RECORDS_BUCKET: Final = "EMULSION_JOB_RECORDS"
# Roles one replica at a time holds (emulsion_runtime.singleton): a key per role.
SINGLETONS_BUCKET: Final = "EMULSION_SINGLETONS"

# JetStream keeps an object store as this stream.
INGESTS_STREAM: Final = f"OBJ_{INGESTS_STORE}"
# JetStream keeps a KV bucket as this stream, one subject per key.
STAGING_LEASES_STREAM: Final = f"KV_{STAGING_LEASES_BUCKET}"

# Subjects: `emulsion.<kind>.…`; a stream takes its kind's every subject.
WORK_SUBJECTS: Final = "emulsion.work.>"
EVENTS_SUBJECTS: Final = "emulsion.events.>"
GC_SUBJECTS: Final = "emulsion.gc.>"


def max_deliveries_advisory(durable: str) -> str:
    """The subject the server publishes on when a message of the work stream ran out of
    deliveries (`max_deliver`) at `durable`."""
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{WORK_STREAM}.{durable}"


MAX_DELIVERIES_ADVISORY: Final = max_deliveries_advisory(PROCESSORS)

_LEASE_PART: Final = re.compile(r"[-A-Za-z0-9]+")


def subject_token(value: str) -> str:
    """`value` as one subject token. Kubernetes names may hold '.', which separates NATS
    subject tokens; they never hold '_', so this mapping is one-to-one."""
    if not value or any(c in value for c in " \t\r\n*>_"):
        raise ValueError(f"{value!r} cannot be a subject token")
    return value.replace(".", "_")


def _name(token: str) -> str:
    return token.replace("_", ".")


class Lane(StrEnum):
    """Which queue a job's work waits in. Processors take interactive work first (small
    jobs, or one a token may mark so) and keep a share for bulk work whenever it waits;
    each lane has its own durable consumer, so a gallery's backlog never sits in front
    of a single photo."""

    INTERACTIVE = "interactive"
    BULK = "bulk"


# The subjects of each lane's work; a consumer per lane filters on its own. Exactly five
# tokens, not `emulsion.work.<lane>.>`: the work stream is a work queue, whose consumers'
# filters may not overlap (nor one consumer's own), and `emulsion.work.interactive.>`
# would overlap the legacy `emulsion.work.*.*` (a namespace named `interactive`).
LANE_SUBJECTS: Final = {lane: f"emulsion.work.{lane}.*.*" for lane in Lane}
# Work published before the lanes (`emulsion.work.<namespace>.<job>`, four tokens): the bulk
# lane's consumer also takes these, so a rolling upgrade leaves nothing queued unread.
LEGACY_WORK_SUBJECTS: Final = "emulsion.work.*.*"


# Each lane's durable consumer on the work stream. Bulk first, the order they are created
# in: a work-queue stream refuses consumers whose filters overlap, so at an upgrade the
# bulk durable (the single consumer of `emulsion.work.>` before) must be narrowed before
# the interactive one can exist.
WORK_CONSUMERS: Final = {Lane.BULK: PROCESSORS, Lane.INTERACTIVE: PROCESSORS_INTERACTIVE}
# What each lane's consumer takes: its lane's subjects; the bulk lane's also the legacy ones.
WORK_CONSUMER_FILTERS: Final = {
    Lane.INTERACTIVE: (LANE_SUBJECTS[Lane.INTERACTIVE],),
    Lane.BULK: (LANE_SUBJECTS[Lane.BULK], LEGACY_WORK_SUBJECTS),
}
# The max-deliveries advisories of both work consumers, kept in ADVISORIES_STREAM.
MAX_DELIVERIES_ADVISORIES: Final = tuple(
    max_deliveries_advisory(durable) for durable in WORK_CONSUMERS.values()
)


def work_subject(namespace: str, job: str, lane: Lane = Lane.BULK) -> str:
    return f"emulsion.work.{lane}.{subject_token(namespace)}.{subject_token(job)}"


def job_work_subjects(namespace: str, job: str) -> str:
    """The filter matching a job's work in either lane (not the legacy form)."""
    return f"emulsion.work.*.{subject_token(namespace)}.{subject_token(job)}"


def legacy_work_subject(namespace: str, job: str) -> str:
    """A job's work subject as published before the lanes (four tokens, read as bulk);
    a cancel or a recovery still looks there during an upgrade."""
    return f"emulsion.work.{subject_token(namespace)}.{subject_token(job)}"


def events_subject(namespace: str, job: str) -> str:
    return f"emulsion.events.{subject_token(namespace)}.{subject_token(job)}"


def gc_subject(reason: str) -> str:
    return f"emulsion.gc.{subject_token(reason)}"


def parse_work_subject(subject: str) -> tuple[str, str] | None:
    """The namespace and job a work subject names (either lane, or the legacy form), or
    None if it is not one."""
    parts = subject.split(".")
    if parts[:2] != ["emulsion", "work"]:
        return None
    if len(parts) == 5 and parts[2] in tuple(Lane):
        parts = parts[:2] + parts[3:]
    if len(parts) != 4 or not all(parts[2:]):
        return None
    return _name(parts[2]), _name(parts[3])


def work_lane(subject: str) -> Lane:
    """The lane a work subject is in; legacy subjects are bulk work."""
    parts = subject.split(".")
    if len(parts) == 5 and parts[2] in tuple(Lane):
        return Lane(parts[2])
    return Lane.BULK


@dataclass(frozen=True, slots=True)
class WorkId:
    """A work message's id: `<job uid>/<index>`, then what made this copy new, if anything
    (`/<re-dispatch suffix>` from the controller's recovery, `/handback-<ulid>` from a
    processor giving an item back). Each copy's id is new so the stream's deduplication
    lets it through; the job and index never change."""

    job_uid: str
    index: int
    suffix: str = ""

    def __str__(self) -> str:
        base = f"{self.job_uid}/{self.index}"
        return f"{base}/{self.suffix}" if self.suffix else base


def work_msg_id(job_uid: str, index: int, *, redispatch: str | None = None) -> str:
    """The id of an item's work message; `redispatch` makes a deliberate second copy."""
    return str(WorkId(job_uid, index, redispatch or ""))


def handback_msg_id(original: str) -> str:
    """The id of the copy a processor republishes when it gives an item back: new, so the
    original's id (still in the duplicate window) does not swallow it."""
    return f"{original}/handback-{keys.new_ulid()}"


def parse_work_msg_id(msg_id: str | None) -> WorkId | None:
    """The job uid and index in a work message id (any copy's), or None if unreadable."""
    uid, _, rest = (msg_id or "").partition("/")
    index, _, suffix = rest.partition("/")
    if not uid or not index.isdigit():
        return None
    return WorkId(uid, int(index), suffix)


@dataclass(frozen=True, slots=True)
class WorkAddress:
    """Which job's which item a work message is, from its subject and id alone: enough to
    report a failed item even when the body cannot be read."""

    job: JobRef
    index: int


def work_address(subject: str, msg_id: str | None) -> WorkAddress | None:
    names = parse_work_subject(subject)
    work_id = parse_work_msg_id(msg_id)
    if names is None or work_id is None:
        return None
    namespace, name = names
    return WorkAddress(JobRef(namespace=namespace, name=name, uid=work_id.job_uid), work_id.index)


def result_msg_id(job_uid: str, index: int) -> str:
    """The id of an item's result: one per item, so a processor that crashes after
    publishing and redoes the item publishes nothing new within the window."""
    return f"{job_uid}/{index}/result"


def gc_msg_id(reason: GcReason, version: str) -> str:
    """The id of a processor's GC request for what `version` replaced or left behind."""
    return f"gc/{reason}/{version}"


def deleted_gc_msg_id(collection: str, asset: str, version: str) -> str:
    """The id of the API's GC request for a deleted asset's `version`; the asset travels as
    its key segment, so the header stays ASCII whatever the name."""
    return f"deleted/{collection}/{keys.asset_segment(asset)}/{version}"


def staging_lease_key(upload_id: str, job_uid: str) -> str:
    """The lease key of one job on one staging upload: `<upload id>.<job uid>`."""
    for part in (upload_id, job_uid):
        if not _LEASE_PART.fullmatch(part):
            raise ValueError(f"{part!r} cannot be part of a lease key")
    return f"{upload_id}.{job_uid}"


def staging_lease_subjects(upload_id: str) -> str:
    """The subject filter matching every job's lease on `upload_id` in STAGING_LEASES_STREAM."""
    return f"$KV.{STAGING_LEASES_BUCKET}.{staging_lease_key(upload_id, 'x')[:-1]}*"


def janitor_sweeper_role(bucket: str) -> str:
    """The role of sweeping `bucket`: one per bucket, so janitors of two installations
    sharing a NATS (or tests on one stack) each sweep their own."""
    return f"janitor-sweeper.{bucket}"
