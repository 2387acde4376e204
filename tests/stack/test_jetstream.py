"""The streams and durable consumers of emulsion_runtime.messaging on a real NATS server."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import uuid
from typing import Any

import pytest
from nats.js.api import AckPolicy, RetentionPolicy, StreamConfig

from emulsion_contracts import natsauth, wire
from emulsion_devstack.stack import Endpoints
from emulsion_runtime import messaging
from tests.consumers import set_ack_wait

DAY = messaging.DAY
LIMITS = RetentionPolicy.LIMITS


async def inspect(stack: Endpoints) -> tuple[dict[str, Any], dict[str, Any]]:
    connection = await stack.nats_connect()
    try:
        js = connection.jetstream()
        streams = {s.name: await js.stream_info(s.name) for s in messaging.STREAMS}
        consumers = {
            c.durable: await js.consumer_info(c.stream, c.durable) for c in messaging.CONSUMERS
        }
        return streams, consumers
    finally:
        await connection.drain()


def test_streams_and_consumers_have_the_configured_settings(stack: Endpoints, run: Any) -> None:
    streams, consumers = run(inspect(stack))
    for spec in messaging.STREAMS:
        config = streams[spec.name].config
        assert config.subjects == list(spec.subjects)
        assert config.retention == spec.retention
        assert config.duplicate_window == spec.duplicate_window
        assert config.max_age == spec.max_age
    assert streams[wire.WORK_STREAM].config.retention == RetentionPolicy.WORK_QUEUE
    assert streams[wire.GC_STREAM].config.retention == RetentionPolicy.WORK_QUEUE
    assert streams[wire.EVENTS_STREAM].config.retention == RetentionPolicy.LIMITS
    for consumer in messaging.CONSUMERS:
        settings = consumers[consumer.durable].config
        assert settings.durable_name == consumer.durable
        assert settings.ack_policy == AckPolicy.EXPLICIT
        if len(consumer.filter_subjects) == 1:
            assert settings.filter_subject == consumer.filter_subjects[0]
        else:
            assert not settings.filter_subject
            assert tuple(settings.filter_subjects or ()) == consumer.filter_subjects
        assert settings.max_deliver == consumer.max_deliver
        assert settings.ack_wait == consumer.ack_wait
        assert tuple(settings.backoff or ()) == consumer.backoff


def test_the_same_msg_id_is_stored_once(stack: Endpoints, run: Any) -> None:
    async def publish_twice() -> tuple[bool, bool, int]:
        connection = await stack.nats_connect()
        try:
            js = connection.jetstream()
            subject = wire.events_subject("dedup", "job-1")
            headers = {wire.HEADER_MSG_ID: wire.work_msg_id("uid-1", 0)}
            first = await js.publish(subject, b"{}", headers=headers)
            second = await js.publish(subject, b"{}", headers=headers)
            stored = await js.get_last_msg(wire.EVENTS_STREAM, subject)
            info = await js.stream_info(wire.EVENTS_STREAM)
            assert info.state.messages >= 1
            return first.duplicate or False, second.duplicate or False, stored.seq or 0
        finally:
            await connection.drain()

    first_duplicate, second_duplicate, stored_seq = run(publish_twice())
    assert (first_duplicate, second_duplicate) == (False, True)
    assert stored_seq > 0


def test_reconciling_updates_an_existing_durable(stack: Endpoints, run: Any) -> None:
    async def reconcile() -> tuple[int, int]:
        connection = await stack.nats_connect()
        try:
            js = connection.jetstream()
            original = next(c for c in messaging.CONSUMERS if c.durable == wire.JANITOR)
            changed = dataclasses.replace(original, max_deliver=original.max_deliver + 5)
            await messaging.ensure_jetstream(js, consumers=(changed,))
            updated = (await js.consumer_info(original.stream, original.durable)).config.max_deliver
            await messaging.ensure_jetstream(js)
            restored = (
                await js.consumer_info(original.stream, original.durable)
            ).config.max_deliver
            return updated or 0, restored or 0
        finally:
            await connection.drain()

    janitor = next(c for c in messaging.CONSUMERS if c.durable == wire.JANITOR)
    assert run(reconcile()) == (janitor.max_deliver + 5, janitor.max_deliver)


def live_config(name: str = "S", **changes: Any) -> StreamConfig:
    return dataclasses.replace(
        messaging.StreamSpec(name, ("s.>",), LIMITS, DAY).config(), **changes
    )


def test_a_service_start_never_lowers_replicas_and_raises_them_to_the_configured_number() -> None:
    wanted = messaging.StreamSpec("S", ("s.>",), LIMITS, DAY).config(replicas=1)
    kept = messaging.plan_stream(wanted, live_config(num_replicas=3))
    assert kept.update is None
    assert [(d.field, d.configured, d.live) for d in kept.drift] == [("num_replicas", 1, 3)]

    raised = messaging.plan_stream(
        messaging.StreamSpec("S", ("s.>",), LIMITS, DAY).config(replicas=3),
        live_config(num_replicas=1, max_age=2 * DAY),
    )
    assert raised.update is not None
    assert (raised.update.num_replicas, raised.update.max_age) == (3, 2 * DAY)


def test_operators_settings_are_kept_and_only_missing_subjects_added() -> None:
    live = live_config(subjects=["s.>", "ops.extra.>"], max_age=3 * DAY, num_replicas=3)
    wanted = messaging.StreamSpec("S", ("s.>", "s2.>"), LIMITS, DAY).config(replicas=1)
    plan = messaging.plan_stream(wanted, live)
    assert plan.update is not None
    assert plan.update.subjects == ["s.>", "ops.extra.>", "s2.>"]
    assert (plan.update.max_age, plan.update.num_replicas) == (3 * DAY, 3)
    assert {d.field for d in plan.drift} == {"max_age", "num_replicas"}


def test_ensure_jetstream_keeps_what_operators_changed_on_a_live_stream_and_logs_it(
    stack: Endpoints, run: Any, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"EMULSION_TEST_{uuid.uuid4().hex[:8].upper()}"
    spec = messaging.StreamSpec(name, (f"{name.lower()}.>",), LIMITS, DAY)
    bucket = messaging.BucketSpec(f"{name}_KV", DAY, "a test bucket")

    async def scenario() -> tuple[StreamConfig, StreamConfig]:
        connection = await stack.nats_connect()
        try:
            js = connection.jetstream()
            await messaging.ensure_jetstream(js, (spec,), (), (bucket,))
            # An operator lengthens the max age and routes one more subject into it.
            live = (await js.stream_info(name)).config
            await js.update_stream(
                dataclasses.replace(
                    live, max_age=3 * DAY, subjects=[*(live.subjects or []), "ops.added.>"]
                )
            )
            kv_live = (await js.stream_info(bucket.stream)).config
            await js.update_stream(dataclasses.replace(kv_live, max_age=2 * DAY))
            with caplog.at_level(logging.WARNING, logger="emulsion_runtime.messaging"):
                await messaging.ensure_jetstream(js, (spec,), (), (bucket,))
            after = (await js.stream_info(name)).config
            kv_after = (await js.stream_info(bucket.stream)).config
            await js.delete_stream(name)
            await js.delete_key_value(bucket.name)
            return after, kv_after
        finally:
            await connection.drain()

    after, kv_after = run(scenario())
    assert after.max_age == 3 * DAY
    assert after.subjects == [f"{name.lower()}.>", "ops.added.>"]
    assert kv_after.max_age == 2 * DAY
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        f"stream {name}: max_age is {3 * DAY}, the services would create it with {DAY};"
        " kept as it is" in warnings
    )
    assert any(m.startswith(f"stream {bucket.stream}: max_age is {2 * DAY}") for m in warnings)


def test_a_service_that_is_not_the_bootstrap_waits_until_what_it_binds_to_exists(
    stack: Endpoints, run: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"EMULSION_WAIT_{uuid.uuid4().hex[:8].upper()}"
    stream = messaging.StreamSpec(name, (f"{name.lower()}.>",), LIMITS, DAY)
    consumer = messaging.ConsumerSpec(
        name, "d", (f"{name.lower()}.>",), ack_wait=30.0, max_deliver=1
    )
    bucket = messaging.BucketSpec(f"{name}_KV", DAY, "a test bucket")
    identity = natsauth.Identity(
        "probe", publish=(), consumers=((name, "d"),), buckets=(bucket.name,)
    )
    monkeypatch.setattr(messaging, "BOOTSTRAP_POLL_SECONDS", 0.05)

    async def scenario() -> tuple[list[str], bool, list[str]]:
        connection = await stack.nats_connect()
        js = connection.jetstream()
        try:
            with caplog.at_level(logging.WARNING, logger="emulsion_runtime.messaging"):
                waiting = asyncio.create_task(messaging.wait_for_bootstrap(js, identity))
                missing = await messaging.missing_for(js, identity)
                # Still waiting after several polls: nothing it binds to exists yet.
                await asyncio.wait({waiting}, timeout=0.5)
                waited = not waiting.done()
                # What the controller's start does; then the wait ends (its deadline: 10 s).
                await messaging.ensure_jetstream(js, (stream,), (consumer,), (bucket,))
                await asyncio.wait_for(waiting, timeout=10)
            return missing, waited, await messaging.missing_for(js, identity)
        finally:
            with contextlib.suppress(Exception):
                await js.delete_stream(name)
                await js.delete_key_value(bucket.name)
            await connection.drain()

    missing, waited, after = run(scenario())
    assert missing == [f"consumer d of stream {name}", f"stream KV_{bucket.name}"]
    assert waited and after == []
    assert any(
        r.getMessage().startswith("waiting for the controller to create consumer d")
        for r in caplog.records
    )


def test_only_the_controllers_start_resets_a_durable(stack: Endpoints, run: Any) -> None:
    """A processor's start binds to the durable as it is (it may not change it); the
    controller's start puts the configured settings back."""
    spec = next(c for c in messaging.CONSUMERS if c.durable == wire.PROCESSORS)

    async def ack_wait() -> float:
        connection = await stack.nats_connect()
        try:
            info = await connection.jetstream().consumer_info(spec.stream, spec.durable)
            return float(info.config.ack_wait or 0)
        finally:
            await connection.close()

    async def start_as(identity: str) -> None:
        connection, _ = await messaging.connect(stack.nats_settings(identity), identity)
        await connection.close()

    run(set_ack_wait(stack, (spec.durable,), 7.0))
    try:
        run(start_as("processor"))
        after_processor = run(ack_wait())
        run(start_as("controller"))
        after_controller = run(ack_wait())
    finally:
        run(set_ack_wait(stack, (spec.durable,), None))
    assert (after_processor, after_controller) == (7.0, spec.ack_wait)
