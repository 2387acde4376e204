"""The fast path on the real NATS JetStream and MinIO: GC requests from the EMULSION_GC stream."""

from __future__ import annotations

import dataclasses
import socket
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from emulsion_contracts import keys, wire
from emulsion_devstack.stack import Endpoints, s3_client
from emulsion_janitor.settings import JanitorSettings

from .conftest import (
    Layout,
    connected,
    janitor,
    metric,
    refusals,
    until,
    version_id,
    wait_for,
    wait_for_async,
)

pytestmark = pytest.mark.usefixtures("empty_gc_queue")

Settings = Callable[..., JanitorSettings]

# The collection the uploads in these tests were presigned for.
STAGING_COLLECTION = "janitor-uploads"


def gc_messages(outcome: str) -> float:
    return metric("emulsion_janitor_gc_messages_total", outcome=outcome)


def assert_held_and_given_back(
    run: Any,
    stack: Endpoints,
    s3: Any,
    layout: Layout,
    settings: JanitorSettings,
    reason: str,
    named: Sequence[str],
    guard: str,
) -> None:
    """A GC request of `reason` naming `named`, to a janitor of `settings`: the guard
    `guard` refuses every key, all stay, and the request is given back for a later attempt
    (with a delay: neither acknowledged nor dropped)."""
    before = refusals(guard)
    retries_before = gc_messages("retry")

    async def scenario() -> tuple[int, int]:
        async with janitor(stack, s3, settings), connected(stack) as bus:
            await bus.publish(reason, named)
            await wait_for_async("a retry", lambda: gc_messages("retry") > retries_before)
            backlog: tuple[int, int] = await bus.gc_backlog()
            return backlog

    pending, unacknowledged = run(scenario())
    assert refusals(guard) - before == len(named)
    assert layout.present(named) == set(named)
    assert pending + unacknowledged == 1


def test_reingested_asset_old_version_goes_after_the_grace_period_new_one_stays(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    old, new = layout.reingested(collection, "IMG_0001.jpg")
    deferred_before = gc_messages("deferred")
    deleted_before = metric("emulsion_janitor_deleted_keys_total", reason="superseded", source="gc")

    async def scenario() -> float:
        async with janitor(stack, s3, settings_for()), connected(stack) as bus:
            not_before = datetime.now(UTC) + timedelta(seconds=2)
            await bus.publish("superseded", old.keys, not_before=not_before)
            # Not due yet: given back with a delay, nothing deleted.
            await wait_for_async(
                "the request to be deferred", lambda: gc_messages("deferred") > deferred_before
            )
            assert datetime.now(UTC) < not_before
            assert layout.present(old.keys) == set(old.keys)
            await wait_for_async("the old version to go", lambda: not layout.present(old.keys))
            return (datetime.now(UTC) - not_before).total_seconds()

    late_by = run(scenario())
    assert late_by >= 0, "deleted before not_before"
    assert layout.present(new.keys) == set(new.keys)
    assert layout.exists(keys.manifest_key(collection, "IMG_0001.jpg"))
    # One deferral with the time left, then one delivery that deletes: no busy loop.
    assert gc_messages("deferred") - deferred_before <= 2
    assert metric(
        "emulsion_janitor_deleted_keys_total", reason="superseded", source="gc"
    ) - deleted_before == len(old.keys)


def test_stale_job_finishing_last_loses_its_keys_and_the_live_version_stays(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    earlier_job = version_id(time.time() - 60)
    later_job = version_id()
    live = layout.version(collection, "IMG_0002.jpg", later_job)
    layout.commit(live)
    # The earlier job's item finishes afterwards: its commit is stale, its keys go to GC.
    stale = layout.version(collection, "IMG_0002.jpg", earlier_job)

    async def scenario() -> None:
        async with janitor(stack, s3, settings_for()), connected(stack) as bus:
            await bus.publish("stale", stale.keys)
            await wait_for_async("the stale version to go", lambda: not layout.present(stale.keys))
            await until("the request to be acknowledged", bus.settled)

    run(scenario())
    assert layout.present(live.keys) == set(live.keys)


def test_a_request_naming_live_keys_is_refused_counted_and_acknowledged(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    live = layout.version(collection, "IMG_0003.jpg")
    layout.commit(live)
    # Not in the manifest's list, but under the live version's prefix: live all the same.
    unlisted = layout.put(
        keys.derivative_key(collection, "IMG_0003.jpg", live.version, "extra", "webp")
    )
    before = refusals("live")
    done_before = gc_messages("done")

    async def scenario() -> None:
        async with janitor(stack, s3, settings_for()), connected(stack) as bus:
            await bus.publish("superseded", [*live.keys, unlisted])
            await wait_for_async(
                "the request to be handled", lambda: gc_messages("done") > done_before
            )
            await until("the request to be acknowledged", bus.settled)

    run(scenario())
    assert refusals("live") - before == len(live.keys) + 1
    assert layout.present([*live.keys, unlisted]) == {*live.keys, unlisted}


def test_keys_younger_than_the_grace_period_stay_and_the_request_waits(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    old = layout.version(collection, "IMG_0004.jpg")
    layout.commit(layout.version(collection, "IMG_0004.jpg"))
    # The producer's not_before has passed, but the objects are seconds old.
    settings = settings_for(gc_grace_seconds=3600)
    assert_held_and_given_back(run, stack, s3, layout, settings, "superseded", old.keys, "grace")


def test_a_request_for_a_version_newer_than_the_live_one_waits_for_the_orphan_age(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    live = layout.version(collection, "IMG_0009.jpg", version_id(time.time() - 60))
    layout.commit(live)
    # An item still being made: its keys are written, its commit has not happened yet.
    # A GC request naming them (a producer's mistake, or a forged one) must not take them.
    in_flight = layout.version(collection, "IMG_0009.jpg")
    # Grace 0 and not_before passed: only the age rule for newer versions holds them, and
    # the request is kept for a later attempt (when the orphan age may have passed).
    settings = settings_for(orphan_age=3600)
    assert_held_and_given_back(
        run, stack, s3, layout, settings, "stale", in_flight.keys, "newer_than_live"
    )
    # The item commits, and everything its manifest names is there.
    layout.commit(in_flight)
    assert layout.present(in_flight.keys) == set(in_flight.keys)


def test_keys_outside_the_prefixes_are_refused_and_untouched(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    manifest = keys.manifest_key(collection, "IMG_0005.jpg")
    outside = [
        layout.put(manifest, b"{}"),  # manifests are the API's to delete
        layout.put("other/thing.jpg"),
        layout.put(f"originals/{collection}/loose.jpg"),  # under a prefix, outside the layout
        layout.put("stagingX/01J00000000000000000000000/x.jpg"),
        "originals/../assets/x.json",
        f"staging/../{manifest}",
        "/etc/passwd",
    ]
    before = refusals("prefix")
    done_before = gc_messages("done")

    async def scenario() -> None:
        async with janitor(stack, s3, settings_for()), connected(stack) as bus:
            await bus.publish("deleted", outside)
            await wait_for_async(
                "the request to be handled", lambda: gc_messages("done") > done_before
            )

    run(scenario())
    assert refusals("prefix") - before == len(outside)
    assert layout.present(outside[:4]) == set(outside[:4])


def test_deleted_asset_all_versions_go_and_deleting_twice_is_harmless(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    versions = [layout.version(collection, "IMG_0006.jpg") for _ in range(3)]
    layout.commit(versions[-1])
    layout.forget(collection, "IMG_0006.jpg")
    doomed = [key for version in versions for key in version.keys]
    done_before = gc_messages("done")
    errors_before = metric("emulsion_janitor_delete_errors_total")

    async def scenario() -> None:
        async with janitor(stack, s3, settings_for()), connected(stack) as bus:
            await bus.publish("deleted", doomed)
            await bus.publish("deleted", doomed)  # redelivered, or sent twice
            await wait_for_async("both requests", lambda: gc_messages("done") >= done_before + 2)
            await until("the request to be acknowledged", bus.settled)

    run(scenario())
    assert layout.present(doomed) == set()
    assert metric("emulsion_janitor_delete_errors_total") == errors_before


def test_a_leased_staging_upload_is_kept_until_its_lease_ends(
    stack: Endpoints, s3: Any, layout: Layout, settings_for: Settings, run: Any
) -> None:
    upload = keys.new_ulid()
    staged = layout.put(keys.staging_key(STAGING_COLLECTION, upload, "IMG_0007.jpg"))
    before = refusals("leased")
    retries_before = gc_messages("retry")

    async def scenario() -> None:
        settings = settings_for(lease_recheck=0.5)
        async with janitor(stack, s3, settings), connected(stack) as bus:
            await bus.lease(upload)
            await bus.publish("promoted", [staged])
            await wait_for_async("a retry", lambda: gc_messages("retry") > retries_before)
            assert layout.exists(staged)
            await bus.release(upload)
            await wait_for_async("the promoted upload to go", lambda: not layout.exists(staged))

    run(scenario())
    assert refusals("leased") > before


def test_a_malformed_request_is_terminated_and_the_next_one_is_carried_out(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    old = layout.version(collection, "IMG_0008.jpg")
    layout.commit(layout.version(collection, "IMG_0008.jpg"))
    malformed_before = gc_messages("malformed")

    async def scenario() -> None:
        async with janitor(stack, s3, settings_for()), connected(stack) as bus:
            await bus.publish_raw(wire.gc_subject("superseded"), b'{"v": 1, "keys": "nope"}')
            await bus.publish_raw(wire.gc_subject("superseded"), b"\x00not json")
            await bus.publish("superseded", old.keys)
            await wait_for_async("the good request", lambda: not layout.present(old.keys))
            await until("the request to be acknowledged", bus.settled)

    run(scenario())
    assert gc_messages("malformed") - malformed_before == 2


def test_a_store_failing_under_a_request_gives_it_back_with_a_delay_not_the_backoff(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    """Left unacknowledged, a request would wait out the consumer's backoff (5 minutes at
    its second delivery, 15 at its third); given back, it comes again in 30 s."""
    old = layout.version(collection, "IMG_0013.jpg")
    layout.commit(layout.version(collection, "IMG_0013.jpg"))
    with socket.socket() as probe:  # a port nothing listens on: the store is down
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    down = s3_client(dataclasses.replace(stack, s3_endpoint_url=f"http://127.0.0.1:{closed}"))
    retries_before, errors_before = gc_messages("retry"), gc_messages("error")

    async def scenario() -> tuple[int, int]:
        async with janitor(stack, down, settings_for()), connected(stack) as bus:
            await bus.publish("superseded", old.keys)
            await wait_for_async("a retry", lambda: gc_messages("retry") > retries_before)
            backlog: tuple[int, int] = await bus.gc_backlog()
            return backlog

    pending, unacknowledged = run(scenario())
    assert gc_messages("error") == errors_before, "left to the backoff, not given back"
    assert pending + unacknowledged == 1
    assert layout.present(old.keys) == set(old.keys)


def test_the_delete_span_continues_the_producers_trace(
    stack: Endpoints,
    s3: Any,
    layout: Layout,
    collection: str,
    settings_for: Settings,
    run: Any,
    spans: InMemorySpanExporter,
) -> None:
    old = layout.version(collection, "IMG_0009.jpg")
    layout.commit(layout.version(collection, "IMG_0009.jpg"))
    tracer = trace.get_tracer("test.producer")

    async def scenario() -> trace.SpanContext:
        async with janitor(stack, s3, settings_for()), connected(stack) as bus:
            with tracer.start_as_current_span("processor.commit") as producer:
                await bus.publish("superseded", old.keys)  # injects the current context
            await wait_for_async("the old version to go", lambda: not layout.present(old.keys))
            return producer.get_span_context()

    producer = run(scenario())
    delete_spans = [
        s
        for s in spans.get_finished_spans()
        if s.name == "process emulsion.gc" and s.context.trace_id == producer.trace_id
    ]
    assert len(delete_spans) == 1
    span = delete_spans[0]
    assert span.parent is not None and span.parent.span_id == producer.span_id
    assert span.attributes is not None
    assert span.attributes["emulsion.gc.deleted"] == len(old.keys)
    assert span.attributes["emulsion.gc.reason"] == "superseded"
    assert span.attributes["messaging.system"] == "nats"
    assert span.attributes["messaging.operation.type"] == "process"
    assert str(span.attributes["messaging.destination.name"]).startswith("emulsion.gc.")


def test_the_fast_path_keeps_a_just_superseded_version_for_the_grace_from_the_supersession(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    grace = 3.0
    old = layout.version(collection, "IMG_0010.jpg")
    layout.commit(old)
    written = datetime.now(UTC)
    wait_for(
        "the old keys to be older than the grace period",
        lambda: datetime.now(UTC) > written + timedelta(seconds=grace + 1),
    )
    superseded_at = layout.commit(layout.version(collection, "IMG_0010.jpg")).committed_at
    before = refusals("grace")

    async def scenario() -> datetime:
        async with (
            janitor(stack, s3, settings_for(gc_grace_seconds=grace)),
            connected(stack) as bus,
        ):
            await bus.publish("superseded", old.keys)  # due at once
            await wait_for_async("a grace refusal", lambda: refusals("grace") > before)
            assert layout.present(old.keys) == set(old.keys)
            await wait_for_async("the old version to go", lambda: not layout.present(old.keys))
            return datetime.now(UTC)

    gone_at = run(scenario())
    assert gone_at >= superseded_at + timedelta(seconds=grace)


def test_a_dry_run_consumer_deletes_nothing_and_leaves_every_request_on_the_stream(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    versions = [layout.version(collection, "IMG_0011.jpg") for _ in range(2)]
    doomed = [key for version in versions for key in version.keys]  # no manifest: deleted
    before = refusals("dry_run")
    left_before = gc_messages("left")

    async def dry() -> tuple[int, int]:
        async with janitor(stack, s3, settings_for(dry_run=True)), connected(stack) as bus:
            await bus.publish("deleted", doomed)
            await bus.publish_raw(wire.gc_subject("deleted"), b"\x00not json")
            await wait_for_async(
                "both requests left", lambda: gc_messages("left") >= left_before + 2
            )
            backlog: tuple[int, int] = await bus.gc_backlog()
            return backlog

    pending, unacknowledged = run(dry())
    assert refusals("dry_run") - before == len(doomed)
    assert layout.present(doomed) == set(doomed)
    assert pending + unacknowledged == 2  # given back, neither acknowledged nor terminated


def test_the_deletion_cap_applies_to_the_fast_path(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    doomed = list(layout.version(collection, "IMG_0012.jpg").keys)  # five keys, no manifest
    before = refusals("cap")
    retries_before = gc_messages("retry")

    async def scenario() -> tuple[int, int]:
        capped = settings_for(max_deletions_per_sweep=3)
        async with janitor(stack, s3, capped), connected(stack) as bus:
            await bus.publish("deleted", doomed)
            await wait_for_async("a retry", lambda: gc_messages("retry") > retries_before)
            backlog: tuple[int, int] = await bus.gc_backlog()
            return backlog

    pending, unacknowledged = run(scenario())
    assert len(layout.present(doomed)) == len(doomed) - 3
    assert refusals("cap") - before == len(doomed) - 3
    assert pending + unacknowledged == 1  # kept for when the allowance refills


def test_a_superseded_index_entry_named_by_a_request_goes_and_the_live_one_is_refused(
    stack: Endpoints, s3: Any, layout: Layout, collection: str, settings_for: Settings, run: Any
) -> None:
    old, new = layout.reingested(collection, "IMG_0042.jpg")
    live = layout.commit(new)
    when = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    superseded = keys.taken_key(collection, "IMG_0042.jpg", old.version, when)
    current = live.taken_key()
    assert current is not None
    layout.put_many([superseded, current])

    async def scenario() -> None:
        async with janitor(stack, s3, settings_for()), connected(stack) as bus:
            # As the processor names them (the old version's files and its entry), with
            # the live entry slipped in by mistake: that one the guards refuse.
            await bus.publish("superseded", [*old.keys, superseded, current])
            await wait_for_async("the old entry to go", lambda: not layout.exists(superseded))

    before = refusals("live")
    run(scenario())
    assert not layout.present([*old.keys, superseded])
    assert layout.exists(current)
    assert refusals("live") - before >= 1
