"""Who may publish and subscribe what on NATS: one table, the source of every permission.

Each service connects as its own NATS user (`api`, `controller`, `processor`, `janitor`)
and may publish and subscribe exactly the subjects listed here: its own stream subjects,
the JetStream API calls of its own durable consumers and KV buckets, and its own inbox
(`_INBOX_<identity>.>`, set as nats-py's `inbox_prefix`, so no identity can read another's
replies). The devstack's nats-server configuration, the chart's `authorization` snippet
(`charts/emulsion/files/nats-permissions.json`, `tools/nats_permissions.py`) and the
permission-matrix test (tests/security/test_nats.py) are all derived from `IDENTITIES`.

The controller is the bootstrap identity: only it may create or update the streams,
durable consumers and KV buckets (`emulsion_runtime.messaging.ensure_jetstream`); the other
services wait, not ready, until what they bind to exists (`emulsion_runtime.messaging.connect`,
which also turns the settings into credentials, the inbox prefix and TLS).

No identity has `allow_responses`: none of the services answers requests. JetStream's
own replies (API responses, acks' confirmations, pull deliveries) are sent by the server
to the requester's inbox and need only the subscribe permission on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, get_args

from emulsion_contracts import wire
from emulsion_contracts.messages import GcReason

API: Final = "$JS.API"

API_IDENTITY: Final = "api"
CONTROLLER_IDENTITY: Final = "controller"
PROCESSOR_IDENTITY: Final = "processor"
JANITOR_IDENTITY: Final = "janitor"
# The identity that creates and updates streams, consumers and buckets.
BOOTSTRAP: Final = CONTROLLER_IDENTITY

# What the bootstrap creates (`emulsion_runtime.messaging`'s STREAMS, BUCKETS and
# CONSUMERS, in their order; a test holds the two equal): every stream, every KV bucket
# and every durable consumer, as (stream, durable). The object store of item lists
# (wire.INGESTS_STREAM) comes last.
STREAMS: Final = (wire.WORK_STREAM, wire.EVENTS_STREAM, wire.GC_STREAM, wire.ADVISORIES_STREAM)
BUCKETS: Final = (
    wire.CANCELLED_BUCKET,
    wire.STAGING_LEASES_BUCKET,
    # The shared version clock: read and written by the API and the controller with
    # compare-and-set.
    wire.CLOCK_BUCKET,
    # What IngestJobs keep outside etcd (emulsion_contracts.jobrecords): the API writes
    # item lists and reads records; the controller reads item lists and writes records.
    wire.RECORDS_BUCKET,
    wire.SINGLETONS_BUCKET,
)
# The work stream's durables, one per lane, in wire.WORK_CONSUMERS's order.
WORK_DURABLES: Final = tuple(
    (wire.WORK_STREAM, durable) for durable in wire.WORK_CONSUMERS.values()
)
DURABLES: Final = (
    *WORK_DURABLES,
    (wire.EVENTS_STREAM, wire.CONTROLLER),
    (wire.GC_STREAM, wire.JANITOR),
    (wire.ADVISORIES_STREAM, wire.CONTROLLER_ADVISORIES),
)


def inbox_prefix(identity: str) -> str:
    """The inbox prefix of `identity` (nats-py's `inbox_prefix`): its replies land below it."""
    return f"_INBOX_{identity}"


def _stream_of(bucket: str) -> str:
    return f"KV_{bucket}"


def _pull(stream: str, durable: str) -> tuple[str, ...]:
    """A pull consumer bound by name: fetch, ask whether it exists, ack/nak/progress/term."""
    return (
        f"{API}.CONSUMER.MSG.NEXT.{stream}.{durable}",
        f"{API}.CONSUMER.INFO.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
    )


def _stream_read(stream: str) -> tuple[str, ...]:
    """Bind (stream info, also with a subject filter) and message gets, direct or not:
    nats-py uses the direct form only when the stream allows it."""
    return (
        f"{API}.STREAM.INFO.{stream}",
        f"{API}.STREAM.MSG.GET.{stream}",
        f"{API}.DIRECT.GET.{stream}",
        f"{API}.DIRECT.GET.{stream}.>",
    )


def _kv_read(bucket: str) -> tuple[str, ...]:
    """Bind and get: reads of the bucket's stream."""
    return _stream_read(_stream_of(bucket))


def _kv_write(bucket: str) -> tuple[str, ...]:
    """Put, compare-and-set and delete are all publishes on the bucket's key subjects."""
    return (f"$KV.{bucket}.>",)


def _kv_watch(bucket: str) -> tuple[str, ...]:
    """nats-py's watch: an ephemeral ordered push consumer (unnamed create, info of its
    server-given name) and its flow-control replies."""
    stream = _stream_of(bucket)
    return (
        f"{API}.CONSUMER.CREATE.{stream}",
        f"{API}.CONSUMER.INFO.{stream}.*",
        f"$JS.FC.{stream}.>",
    )


def _object_read(store: str) -> tuple[str, ...]:
    """Bind, then message gets: an object's last meta message, its chunks by subject
    (emulsion_runtime.records_store.get_items reads without consumers)."""
    return _stream_read(f"OBJ_{store}")


def _object_write(store: str) -> tuple[str, ...]:
    """Chunks and meta are publishes. No purge: a put over an existing name would purge
    its old chunks, and the API never writes a name twice (a job's name is its version)."""
    return (f"$O.{store}.>",)


def _bootstrap() -> tuple[str, ...]:
    """Create and update exactly Emulsion's streams, buckets and durables (both the
    legacy durable-create subject nats-py uses and the named form newer clients use)."""
    streams = [*STREAMS, *(_stream_of(bucket) for bucket in BUCKETS), wire.INGESTS_STREAM]
    subjects: list[str] = []
    for stream in streams:
        subjects += [
            f"{API}.STREAM.CREATE.{stream}",
            f"{API}.STREAM.UPDATE.{stream}",
            f"{API}.STREAM.INFO.{stream}",
        ]
    for stream, durable in DURABLES:
        subjects += [
            f"{API}.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
            f"{API}.CONSUMER.CREATE.{stream}.{durable}",
            f"{API}.CONSUMER.CREATE.{stream}.{durable}.>",
        ]
    return tuple(subjects)


@dataclass(frozen=True)
class Identity:
    """One NATS user: what it may publish and subscribe, and what it binds to."""

    name: str
    publish: tuple[str, ...]
    # Streams (by stream name), durables (stream, durable) and buckets it binds to at
    # start: a service that is not the bootstrap waits until they all exist.
    consumers: tuple[tuple[str, str], ...] = ()
    buckets: tuple[str, ...] = ()
    streams: tuple[str, ...] = ()
    allow_responses: bool = False

    @property
    def inbox_prefix(self) -> str:
        return inbox_prefix(self.name)

    @property
    def subscribe(self) -> tuple[str, ...]:
        # Every delivery (pull fetches, KV watches, JetStream API replies) comes to the
        # inbox: no identity subscribes to a stream subject directly.
        return (f"{self.inbox_prefix}.>",)

    @property
    def bootstrap(self) -> bool:
        return self.name == BOOTSTRAP


# Where the processor publishes GC requests: every reason but the API's delete and the
# janitor's own sweep (`abandoned`, never published).
PROCESSOR_GC_REASONS: Final = tuple(
    reason for reason in get_args(GcReason) if reason not in ("deleted", "abandoned")
)

IDENTITIES: Final[dict[str, Identity]] = {
    identity.name: identity
    for identity in (
        Identity(
            API_IDENTITY,
            publish=(
                # GC requests for deleted assets (bus.py).
                wire.gc_subject("deleted"),
                *_kv_read(wire.CLOCK_BUCKET),
                *_kv_write(wire.CLOCK_BUCKET),
                *_object_read(wire.INGESTS_STORE),
                *_object_write(wire.INGESTS_STORE),
                *_kv_read(wire.RECORDS_BUCKET),
                *_kv_watch(wire.RECORDS_BUCKET),
            ),
            buckets=(wire.CLOCK_BUCKET, wire.RECORDS_BUCKET),
            streams=(wire.INGESTS_STREAM,),
        ),
        Identity(
            CONTROLLER_IDENTITY,
            publish=(
                wire.WORK_SUBJECTS,
                *_bootstrap(),
                # Results and exhausted work: its two durables.
                *_pull(wire.EVENTS_STREAM, wire.CONTROLLER),
                *_pull(wire.ADVISORIES_STREAM, wire.CONTROLLER_ADVISORIES),
                # A cancelled job's queued work: counted, purged; an advisory's work
                # message read and deleted; a job's queued items read by subject.
                f"{API}.STREAM.PURGE.{wire.WORK_STREAM}",
                f"{API}.STREAM.MSG.GET.{wire.WORK_STREAM}",
                f"{API}.STREAM.MSG.DELETE.{wire.WORK_STREAM}",
                *_kv_read(wire.STAGING_LEASES_BUCKET),
                *_kv_write(wire.STAGING_LEASES_BUCKET),
                *_kv_read(wire.CANCELLED_BUCKET),
                *_kv_write(wire.CANCELLED_BUCKET),
                *_kv_read(wire.CLOCK_BUCKET),
                *_kv_write(wire.CLOCK_BUCKET),
                *_object_read(wire.INGESTS_STORE),
                *_kv_read(wire.RECORDS_BUCKET),
                *_kv_write(wire.RECORDS_BUCKET),
            ),
            consumers=(
                (wire.EVENTS_STREAM, wire.CONTROLLER),
                (wire.ADVISORIES_STREAM, wire.CONTROLLER_ADVISORIES),
            ),
            buckets=(
                wire.STAGING_LEASES_BUCKET,
                wire.CANCELLED_BUCKET,
                wire.CLOCK_BUCKET,
                wire.RECORDS_BUCKET,
            ),
            streams=(wire.INGESTS_STREAM,),
        ),
        Identity(
            PROCESSOR_IDENTITY,
            publish=(
                # A hand-back republishes the work message it holds (worker.hand_back):
                # the same signed body on the same subject, so it can forge nothing the
                # signature check would let through.
                wire.WORK_SUBJECTS,
                wire.EVENTS_SUBJECTS,
                *(wire.gc_subject(reason) for reason in PROCESSOR_GC_REASONS),
                # Both lanes' durables (emulsion_runtime.consuming asks them in turn).
                *(
                    subject
                    for stream, durable in WORK_DURABLES
                    for subject in _pull(stream, durable)
                ),
                *_kv_read(wire.CANCELLED_BUCKET),
                *_kv_watch(wire.CANCELLED_BUCKET),
            ),
            consumers=WORK_DURABLES,
            buckets=(wire.CANCELLED_BUCKET,),
        ),
        Identity(
            JANITOR_IDENTITY,
            publish=(
                *_pull(wire.GC_STREAM, wire.JANITOR),
                *_kv_read(wire.STAGING_LEASES_BUCKET),
                # The work stream's max age: tombstones outlive it (service.py).
                f"{API}.STREAM.INFO.{wire.WORK_STREAM}",
                # One janitor at a time sweeps (emulsion_runtime.singleton).
                *_kv_read(wire.SINGLETONS_BUCKET),
                *_kv_write(wire.SINGLETONS_BUCKET),
            ),
            consumers=((wire.GC_STREAM, wire.JANITOR),),
            buckets=(wire.STAGING_LEASES_BUCKET, wire.SINGLETONS_BUCKET),
            streams=(wire.WORK_STREAM,),
        ),
    )
}


def server_users(passwords: dict[str, str]) -> list[dict[str, Any]]:
    """nats-server's `authorization.users`: one user per identity, with its password
    (plain, or a bcrypt hash) from `passwords`, in the table's order."""
    return [
        {
            "user": identity.name,
            "password": passwords[identity.name],
            "permissions": permissions(identity),
        }
        for identity in IDENTITIES.values()
    ]


def permissions(identity: Identity) -> dict[str, Any]:
    """One identity's `permissions` block in nats-server's configuration."""
    block: dict[str, Any] = {
        # In the table's order, once each (helpers overlap: stream info is both a
        # bootstrap call and a bucket bind).
        "publish": {"allow": list(dict.fromkeys(identity.publish))},
        "subscribe": {"allow": list(identity.subscribe)},
    }
    if identity.allow_responses:
        block["allow_responses"] = True
    return block


def permissions_document() -> str:
    """The table as JSON, for the chart (`files/nats-permissions.json`); a test checks
    the chart's copy against it."""
    document = {
        "identities": [{"user": i.name, "permissions": permissions(i)} for i in IDENTITIES.values()]
    }
    return json.dumps(document, indent=2) + "\n"


def identity_of(user: str | None) -> Identity | None:
    return IDENTITIES.get(user or "")
