"""Streams, subjects and durable consumers of DESIGN.md, as data, and their reconciliation.

Every service calls `ensure_jetstream` at start-up, so the settings here are the ones in
force: an existing stream or durable is updated to match rather than kept as it was.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Final

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

log = logging.getLogger(__name__)

MINUTE: Final = 60.0
HOUR: Final = 3600.0
DAY: Final = 86400.0

WORK_STREAM: Final = "EMULSION_WORK"
EVENTS_STREAM: Final = "EMULSION_EVENTS"
GC_STREAM: Final = "EMULSION_GC"
# JetStream's own advisories are core NATS messages, lost if nobody listens at that moment;
# this stream keeps them, so a work item that ran out of deliveries while the controller
# was down is still reported as a failed item when it comes back.
ADVISORIES_STREAM: Final = "EMULSION_ADVISORIES"

PROCESSORS: Final = "processors"
CONTROLLER: Final = "controller"
JANITOR: Final = "janitor"
CONTROLLER_ADVISORIES: Final = "controller-advisories"

HEADER_MSG_ID: Final = "Nats-Msg-Id"

# Key-value buckets (JetStream KV), shared state that must not need Kubernetes access:
# - cancelled jobs, keyed by job uid: the controller puts one when a running job is
#   deleted; processors skip (and never commit) items of a cancelled job.
# - staging leases, one per (upload id, job uid) (`staging_lease_key`): the controller puts
#   one per dispatched item and removes its own when the job ends; the janitor never
#   sweeps an upload that any job still leases. Two jobs of one upload hold two leases,
#   so the first to finish cannot release the other's.
CANCELLED_BUCKET: Final = "EMULSION_CANCELLED"
STAGING_LEASES_BUCKET: Final = "EMULSION_STAGING_LEASES"
# JetStream keeps a KV bucket as this stream, one subject per key.
STAGING_LEASES_STREAM: Final = f"KV_{STAGING_LEASES_BUCKET}"
_LEASE_PART: Final = re.compile(r"[-A-Za-z0-9]+")


def staging_lease_key(upload_id: str, job_uid: str) -> str:
    """The lease key of one job on one staging upload: `<upload id>.<job uid>`."""
    for part in (upload_id, job_uid):
        if not _LEASE_PART.fullmatch(part):
            raise ValueError(f"{part!r} cannot be part of a lease key")
    return f"{upload_id}.{job_uid}"


def staging_lease_subjects(upload_id: str) -> str:
    """The subject filter matching every job's lease on `upload_id` in STAGING_LEASES_STREAM."""
    return f"$KV.{STAGING_LEASES_BUCKET}.{staging_lease_key(upload_id, 'x')[:-1]}*"


def _token(value: str) -> str:
    # Kubernetes names may hold '.', which separates NATS subject tokens; they never
    # hold '_', so this mapping is one-to-one.
    if not value or any(c in value for c in " \t\r\n*>_"):
        raise ValueError(f"{value!r} cannot be a subject token")
    return value.replace(".", "_")


def work_subject(namespace: str, job: str) -> str:
    return f"emulsion.work.{_token(namespace)}.{_token(job)}"


def events_subject(namespace: str, job: str) -> str:
    return f"emulsion.events.{_token(namespace)}.{_token(job)}"


def gc_subject(reason: str) -> str:
    return f"emulsion.gc.{_token(reason)}"


# Published by the server when a work message ran out of deliveries (`max_deliver`).
MAX_DELIVERIES_ADVISORY: Final = (
    f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{WORK_STREAM}.{PROCESSORS}"
)


def work_msg_id(job_uid: str, index: int) -> str:
    return f"{job_uid}/{index}"


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    retention: RetentionPolicy
    max_age: float
    # Long enough to cover a controller restart between publishing and recording it.
    duplicate_window: float = 10 * MINUTE

    def config(self) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            subjects=list(self.subjects),
            retention=self.retention,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=self.max_age,
            duplicate_window=self.duplicate_window,
            num_replicas=1,
        )


@dataclass(frozen=True)
class ConsumerSpec:
    stream: str
    durable: str
    filter_subject: str
    ack_wait: float
    max_deliver: int
    backoff: tuple[float, ...] = ()
    max_ack_pending: int = 1000
    description: str = ""

    def config(self) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=self.durable,
            description=self.description or None,
            deliver_policy=DeliverPolicy.ALL,
            ack_policy=AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            backoff=list(self.backoff) or None,
            filter_subject=self.filter_subject,
            max_ack_pending=self.max_ack_pending,
        )


STREAMS: Final = (
    StreamSpec(WORK_STREAM, ("emulsion.work.>",), RetentionPolicy.WORK_QUEUE, 7 * DAY),
    StreamSpec(EVENTS_STREAM, ("emulsion.events.>",), RetentionPolicy.LIMITS, 1 * DAY),
    StreamSpec(GC_STREAM, ("emulsion.gc.>",), RetentionPolicy.WORK_QUEUE, 30 * DAY),
    StreamSpec(ADVISORIES_STREAM, (MAX_DELIVERIES_ADVISORY,), RetentionPolicy.LIMITS, 7 * DAY),
)

CONSUMERS: Final = (
    # Redeliveries back off; processors send in-progress heartbeats on long items, so
    # the first backoff step is also the longest silence a live worker may keep.
    ConsumerSpec(
        WORK_STREAM,
        PROCESSORS,
        "emulsion.work.>",
        ack_wait=30.0,
        max_deliver=5,
        backoff=(30.0, 60.0, 120.0, 300.0, 600.0),
        max_ack_pending=1000,
        description="image work items, one per IngestJob item",
    ),
    # Status folding must not give up on an event: unbounded deliveries, backed off.
    ConsumerSpec(
        EVENTS_STREAM,
        CONTROLLER,
        "emulsion.events.>",
        ack_wait=30.0,
        max_deliver=-1,
        max_ack_pending=10_000,
        description="item results folded into IngestJob status",
    ),
    # The janitor's periodic sweep is the safety net for anything given up on here.
    ConsumerSpec(
        GC_STREAM,
        JANITOR,
        "emulsion.gc.>",
        ack_wait=60.0,
        max_deliver=20,
        backoff=(60.0, 300.0, 900.0),
        max_ack_pending=1000,
        description="object keys to delete once their grace period has passed",
    ),
    # Each advisory names a work message that is folded as a failed item; like item
    # results, it must never be given up on.
    ConsumerSpec(
        ADVISORIES_STREAM,
        CONTROLLER_ADVISORIES,
        MAX_DELIVERIES_ADVISORY,
        ack_wait=30.0,
        max_deliver=-1,
        max_ack_pending=1000,
        description="work items that ran out of deliveries, reported as failed items",
    ),
)


@dataclass(frozen=True)
class BucketSpec:
    name: str
    ttl: float
    description: str

    def config(self) -> KeyValueConfig:
        return KeyValueConfig(
            bucket=self.name,
            description=self.description,
            ttl=self.ttl,
            history=1,
            storage=StorageType.FILE,
        )


BUCKETS: Final = (
    BucketSpec(CANCELLED_BUCKET, 7 * DAY, "uids of IngestJobs deleted while running"),
    # Outlives any job that can still be running; a lease left by a crash expires.
    BucketSpec(STAGING_LEASES_BUCKET, 7 * DAY, "staging uploads referenced by running jobs"),
)


async def ensure_jetstream(
    js: JetStreamContext,
    streams: tuple[StreamSpec, ...] = STREAMS,
    consumers: tuple[ConsumerSpec, ...] = CONSUMERS,
    buckets: tuple[BucketSpec, ...] = BUCKETS,
) -> None:
    """Create or update every stream, durable consumer and KV bucket to the settings above."""
    for stream in streams:
        config = stream.config()
        try:
            await js.stream_info(stream.name)
        except NotFoundError:
            await js.add_stream(config)
            log.info("created stream %s", stream.name)
        else:
            await js.update_stream(config)
    for consumer in consumers:
        # The server's consumer-create call updates an existing durable in place when the
        # new config differs only in updatable fields, so one call covers both cases.
        await js.add_consumer(consumer.stream, consumer.config())
    for bucket in buckets:
        await js.create_key_value(bucket.config())


async def connect(url: str, name: str) -> tuple[Client, JetStreamContext]:
    """Connect, reconnecting forever, and reconcile the streams and consumers."""
    connection = await nats.connect(
        url, name=name, max_reconnect_attempts=-1, reconnect_time_wait=1, connect_timeout=5
    )
    js = connection.jetstream()
    await ensure_jetstream(js)
    return connection, js
