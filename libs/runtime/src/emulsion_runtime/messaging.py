"""The streams, durable consumers and KV buckets, as data, their reconciliation, and the
connection to NATS.

Their names and subjects are `emulsion_contracts.wire`'s; who may use them is
`emulsion_contracts.natsauth`'s table.

The controller, the bootstrap identity (emulsion_contracts.natsauth), calls
`ensure_jetstream` at start-up: what is missing is created with the settings here, durable
consumers are updated to them, and an existing stream or KV bucket keeps what operators
set (replicas, max age, added subjects); differences are logged. The other services have
no right to create anything: `connect` makes them wait until what they bind to exists.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import NotFoundError

from emulsion_contracts import natsauth
from emulsion_contracts.natsauth import Identity
from emulsion_contracts.wire import (
    ADVISORIES_STREAM,
    CANCELLED_BUCKET,
    CLOCK_BUCKET,
    CONTROLLER,
    CONTROLLER_ADVISORIES,
    EVENTS_STREAM,
    EVENTS_SUBJECTS,
    GC_STREAM,
    GC_SUBJECTS,
    INGESTS_STORE,
    INGESTS_STREAM,
    JANITOR,
    MAX_DELIVERIES_ADVISORIES,
    RECORDS_BUCKET,
    SINGLETONS_BUCKET,
    STAGING_LEASES_BUCKET,
    WORK_CONSUMER_FILTERS,
    WORK_CONSUMERS,
    WORK_STREAM,
    WORK_SUBJECTS,
    Lane,
)
from emulsion_runtime.settings import JetStreamSettings, NatsSettings, load_settings

log = logging.getLogger(__name__)

MINUTE: Final = 60.0
HOUR: Final = 3600.0
DAY: Final = 86400.0

# Seconds a singleton role is held after its holder's last renewal.
SINGLETON_TTL: Final = 60.0


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    retention: RetentionPolicy
    max_age: float
    # Long enough to cover a controller restart between publishing and recording it.
    duplicate_window: float = 10 * MINUTE

    def config(self, replicas: int = 1) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            subjects=list(self.subjects),
            retention=self.retention,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=self.max_age,
            duplicate_window=self.duplicate_window,
            num_replicas=replicas,
        )


@dataclass(frozen=True)
class ConsumerSpec:
    stream: str
    durable: str
    # What the durable takes from its stream: one subject filter, or several (JetStream
    # 2.10's filter_subjects; the bulk lane's durable also takes the legacy work subjects).
    filter_subjects: tuple[str, ...]
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
            # One filter stays the single-subject form, as durables made before were.
            filter_subject=self.filter_subjects[0] if len(self.filter_subjects) == 1 else None,
            filter_subjects=list(self.filter_subjects) if len(self.filter_subjects) > 1 else None,
            max_ack_pending=self.max_ack_pending,
        )


STREAMS: Final = (
    StreamSpec(WORK_STREAM, (WORK_SUBJECTS,), RetentionPolicy.WORK_QUEUE, 7 * DAY),
    StreamSpec(EVENTS_STREAM, (EVENTS_SUBJECTS,), RetentionPolicy.LIMITS, 1 * DAY),
    StreamSpec(GC_STREAM, (GC_SUBJECTS,), RetentionPolicy.WORK_QUEUE, 30 * DAY),
    StreamSpec(ADVISORIES_STREAM, MAX_DELIVERIES_ADVISORIES, RetentionPolicy.LIMITS, 7 * DAY),
)


def _work_consumer(lane: Lane) -> ConsumerSpec:
    # Redeliveries back off; processors send in-progress heartbeats on long items, so
    # the first backoff step is also the longest silence a live worker may keep.
    return ConsumerSpec(
        WORK_STREAM,
        WORK_CONSUMERS[lane],
        WORK_CONSUMER_FILTERS[lane],
        ack_wait=30.0,
        max_deliver=5,
        backoff=(30.0, 60.0, 120.0, 300.0, 600.0),
        max_ack_pending=1000,
        description=f"image work items of the {lane} lane, one per IngestJob item",
    )


CONSUMERS: Final = (
    # One durable per lane, in wire.WORK_CONSUMERS's order (bulk first: see there).
    # JetStream has no per-message priority, so a processor asks the interactive lane's
    # first, keeping a share for bulk (emulsion_runtime.consuming.LaneChoice).
    *(_work_consumer(lane) for lane in WORK_CONSUMERS),
    # Status folding must not give up on an event: unbounded deliveries, backed off.
    ConsumerSpec(
        EVENTS_STREAM,
        CONTROLLER,
        (EVENTS_SUBJECTS,),
        ack_wait=30.0,
        max_deliver=-1,
        max_ack_pending=10_000,
        description="item results folded into IngestJob status",
    ),
    # The janitor's periodic sweep is the safety net for anything given up on here.
    ConsumerSpec(
        GC_STREAM,
        JANITOR,
        (GC_SUBJECTS,),
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
        MAX_DELIVERIES_ADVISORIES,
        ack_wait=30.0,
        max_deliver=-1,
        max_ack_pending=1000,
        description="work items that ran out of deliveries, reported as failed items",
    ),
)


@dataclass(frozen=True)
class BucketSpec:
    name: str
    # Seconds a key is kept (0: for ever); None: the records' retention, a setting.
    ttl: float | None
    description: str

    @property
    def stream(self) -> str:
        """The stream JetStream keeps the bucket in."""
        return f"KV_{self.name}"

    def kept(self, records_retention: float) -> float:
        return records_retention if self.ttl is None else self.ttl

    def config(self, replicas: int = 1, records_retention: float = 0.0) -> KeyValueConfig:
        return KeyValueConfig(
            bucket=self.name,
            description=self.description,
            ttl=self.kept(records_retention),
            history=1,
            storage=StorageType.FILE,
            replicas=replicas,
        )


BUCKETS: Final = (
    BucketSpec(CANCELLED_BUCKET, 7 * DAY, "uids of IngestJobs deleted while running"),
    # Outlives any job that can still be running; a lease left by a crash expires.
    BucketSpec(STAGING_LEASES_BUCKET, 7 * DAY, "staging uploads referenced by running jobs"),
    BucketSpec(CLOCK_BUCKET, 0.0, "the hybrid logical clock job versions are minted from"),
    BucketSpec(RECORDS_BUCKET, None, "IngestJobs' outcomes, failures and summaries"),
    BucketSpec(SINGLETONS_BUCKET, SINGLETON_TTL, "roles one replica at a time holds"),
)


@dataclass(frozen=True)
class Drift:
    """A setting of a live stream that differs from what the services would create."""

    stream: str
    field: str
    configured: object
    live: object


@dataclass(frozen=True)
class StreamPlan:
    # The config to update the live stream to, or None to leave it as it is.
    update: StreamConfig | None
    drift: tuple[Drift, ...]


# Settings an operator may tune on a live stream (kept, but reported when they differ).
_TUNABLE: Final = ("max_age", "duplicate_window", "max_msgs", "max_bytes", "discard")
# Settings the services rely on; a difference is worth a warning (the server refuses
# most of these changes, so nothing here changes them).
_FIXED: Final = ("retention", "storage")


def plan_stream(wanted: StreamConfig, live: StreamConfig) -> StreamPlan:
    """What a service start may change on an existing stream: only what is missing.

    Subjects the services need are added and ones an operator added are kept; replicas
    are raised to the configured number, never lowered; every other live setting is kept
    and reported when it differs from the services' own.
    """
    name = wanted.name or ""
    drift = [
        Drift(name, field, getattr(wanted, field), getattr(live, field))
        for field in (*_FIXED, *_TUNABLE)
        if getattr(wanted, field) is not None and getattr(wanted, field) != getattr(live, field)
    ]
    live_subjects = list(live.subjects or [])
    missing = [subject for subject in wanted.subjects or [] if subject not in live_subjects]
    wanted_replicas = wanted.num_replicas or 1
    live_replicas = live.num_replicas or 1
    if live_replicas != wanted_replicas:
        drift.append(Drift(name, "num_replicas", wanted_replicas, live_replicas))
    if not missing and live_replicas >= wanted_replicas:
        return StreamPlan(None, tuple(drift))
    update = dataclasses.replace(
        live,
        subjects=live_subjects + missing,
        num_replicas=max(live_replicas, wanted_replicas),
    )
    return StreamPlan(update, tuple(drift))


def _report(plan: StreamPlan) -> None:
    for drift in plan.drift:
        log.warning(
            "stream %s: %s is %s, the services would create it with %s; kept as it is",
            drift.stream,
            drift.field,
            drift.live,
            drift.configured,
            extra={"stream": drift.stream, "field": drift.field},
        )


async def _ensure_stream(js: JetStreamContext, wanted: StreamConfig) -> None:
    name = wanted.name or ""
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        await js.add_stream(wanted)
        log.info("created stream %s with %d replicas", name, wanted.num_replicas or 1)
        return
    plan = plan_stream(wanted, info.config)
    _report(plan)
    if plan.update is not None:
        await js.update_stream(plan.update)
        log.info(
            "updated stream %s: subjects %s, %d replicas",
            name,
            plan.update.subjects,
            plan.update.num_replicas or 1,
        )


async def ensure_jetstream(
    js: JetStreamContext,
    streams: tuple[StreamSpec, ...] = STREAMS,
    consumers: tuple[ConsumerSpec, ...] = CONSUMERS,
    buckets: tuple[BucketSpec, ...] = BUCKETS,
    replicas: int = 1,
    records_retention: float = 7 * DAY,
) -> None:
    """Create what is missing: streams, durable consumers and KV buckets.

    An existing stream or bucket keeps what operators set on it (replicas, max age, added
    subjects): a service start only adds missing subjects and raises replicas to
    `replicas`, and logs a warning for every other difference. Durable consumers are the
    services' own and are updated to the settings above.
    """
    for stream in streams:
        await _ensure_stream(js, stream.config(replicas))
    for consumer in consumers:
        # The server's consumer-create call updates an existing durable in place when the
        # new config differs only in updatable fields, so one call covers both cases.
        await js.add_consumer(consumer.stream, consumer.config())
    for bucket in buckets:
        try:
            info = await js.stream_info(bucket.stream)
        except NotFoundError:
            await js.create_key_value(bucket.config(replicas, records_retention))
            log.info("created KV bucket %s with %d replicas", bucket.name, replicas)
            continue
        await _keep_or_raise(js, info.config, replicas, bucket.kept(records_retention))
    try:
        info = await js.stream_info(INGESTS_STREAM)
    except NotFoundError:
        await js.create_object_store(
            INGESTS_STORE,
            config=ObjectStoreConfig(
                description="IngestJobs' item lists, written by the API before the job",
                ttl=records_retention,
                storage=StorageType.FILE,
                replicas=replicas,
            ),
        )
        log.info("created object store %s with %d replicas", INGESTS_STORE, replicas)
    else:
        await _keep_or_raise(js, info.config, replicas, records_retention)


async def _keep_or_raise(
    js: JetStreamContext, live: StreamConfig, replicas: int, max_age: float
) -> None:
    """A bucket's or store's stream as it is, replicas raised (see plan_stream)."""
    plan = plan_stream(dataclasses.replace(live, num_replicas=replicas, max_age=max_age), live)
    _report(plan)
    if plan.update is not None:
        await js.update_stream(plan.update)


# How often a service that is not the bootstrap asks again whether its durables and
# buckets exist, and how many of those asks pass between two log lines.
BOOTSTRAP_POLL_SECONDS: Final = 2.0
BOOTSTRAP_LOG_EVERY: Final = 15


async def missing_for(js: JetStreamContext, identity: Identity) -> list[str]:
    """What `identity` binds to that does not exist yet (its durables, buckets, streams)."""
    missing: list[str] = []
    for stream, durable in identity.consumers:
        try:
            await js.consumer_info(stream, durable)
        except NotFoundError:
            missing.append(f"consumer {durable} of stream {stream}")
    for name in (*identity.streams, *(f"KV_{bucket}" for bucket in identity.buckets)):
        try:
            await js.stream_info(name)
        except NotFoundError:
            missing.append(f"stream {name}")
    return missing


async def wait_for_bootstrap(js: JetStreamContext, identity: Identity) -> None:
    """Return once everything `identity` binds to exists (the controller creates it)."""
    asks = 0
    while missing := await missing_for(js, identity):
        if asks % BOOTSTRAP_LOG_EVERY == 0:
            log.warning(
                "waiting for the controller to create %s",
                ", ".join(missing),
                extra={"identity": identity.name},
            )
        asks += 1
        await asyncio.sleep(BOOTSTRAP_POLL_SECONDS)  # a poll of the server, not a test wait


async def connect(
    settings: NatsSettings, identity: str, replicas: int | None = None
) -> tuple[Client, JetStreamContext]:
    """Connect as `identity`'s service, reconnecting forever; the bootstrap identity (the
    controller) creates the streams, consumers and buckets that are missing, every other
    one waits until those it binds to exist (its readiness stays false meanwhile).

    Credentials and TLS come from `settings` (`connect_options`). `replicas`
    defaults to EMULSION_JETSTREAM_REPLICAS (the chart's `jetstream.replicas`).
    """
    role = natsauth.IDENTITIES[identity]
    connection = await nats.connect(
        **connect_options(settings),
        name=f"emulsion-{identity}",
        max_reconnect_attempts=-1,
        reconnect_time_wait=1,
        connect_timeout=5,
    )
    js = connection.jetstream()
    try:
        if role.bootstrap:
            jetstream = load_settings(JetStreamSettings)
            await ensure_jetstream(
                js,
                replicas=jetstream.replicas if replicas is None else replicas,
                records_retention=jetstream.records_retention_seconds,
            )
        else:
            await wait_for_bootstrap(js, role)
    except BaseException:
        await connection.close()
        raise
    return connection, js


def tls_context(ca_file: str | Path) -> ssl.SSLContext:
    """A client context that trusts only `ca_file` and checks the server's name."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def connect_options(settings: NatsSettings) -> dict[str, Any]:
    """nats.connect's keyword arguments for these settings: servers, credentials, the
    identity's inbox prefix, and TLS verified against NATS_CA_FILE when it is set."""
    options: dict[str, Any] = {"servers": settings.servers()}
    if settings.nats_user:
        options["user"] = settings.nats_user
        options["password"] = settings.password()
        options["inbox_prefix"] = natsauth.inbox_prefix(settings.nats_user)
    if settings.nats_ca_file:
        options["tls"] = tls_context(settings.nats_ca_file)
    return options
