"""The streams and durable consumers of DESIGN.md on a real NATS server with JetStream."""

from __future__ import annotations

import dataclasses
from typing import Any

import nats
from nats.js.api import AckPolicy, RetentionPolicy

from emulsion_contracts import messaging
from emulsion_devstack.stack import Endpoints


async def inspect(url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    connection = await nats.connect(url)
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
    streams, consumers = run(inspect(stack.nats_url))
    for spec in messaging.STREAMS:
        config = streams[spec.name].config
        assert config.subjects == list(spec.subjects)
        assert config.retention == spec.retention
        assert config.duplicate_window == spec.duplicate_window
        assert config.max_age == spec.max_age
    assert streams[messaging.WORK_STREAM].config.retention == RetentionPolicy.WORK_QUEUE
    assert streams[messaging.GC_STREAM].config.retention == RetentionPolicy.WORK_QUEUE
    assert streams[messaging.EVENTS_STREAM].config.retention == RetentionPolicy.LIMITS
    for consumer in messaging.CONSUMERS:
        settings = consumers[consumer.durable].config
        assert settings.durable_name == consumer.durable
        assert settings.ack_policy == AckPolicy.EXPLICIT
        assert settings.filter_subject == consumer.filter_subject
        assert settings.max_deliver == consumer.max_deliver
        assert settings.ack_wait == consumer.ack_wait
        assert tuple(settings.backoff or ()) == consumer.backoff


def test_the_same_msg_id_is_stored_once(stack: Endpoints, run: Any) -> None:
    async def publish_twice() -> tuple[bool, bool, int]:
        connection = await nats.connect(stack.nats_url)
        try:
            js = connection.jetstream()
            subject = messaging.events_subject("dedup", "job-1")
            headers = {messaging.HEADER_MSG_ID: messaging.work_msg_id("uid-1", 0)}
            first = await js.publish(subject, b"{}", headers=headers)
            second = await js.publish(subject, b"{}", headers=headers)
            stored = await js.get_last_msg(messaging.EVENTS_STREAM, subject)
            info = await js.stream_info(messaging.EVENTS_STREAM)
            assert info.state.messages >= 1
            return first.duplicate or False, second.duplicate or False, stored.seq or 0
        finally:
            await connection.drain()

    first_duplicate, second_duplicate, stored_seq = run(publish_twice())
    assert (first_duplicate, second_duplicate) == (False, True)
    assert stored_seq > 0


def test_reconciling_updates_an_existing_durable(stack: Endpoints, run: Any) -> None:
    async def reconcile() -> tuple[int, int]:
        connection = await nats.connect(stack.nats_url)
        try:
            js = connection.jetstream()
            original = next(c for c in messaging.CONSUMERS if c.durable == messaging.JANITOR)
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

    janitor = next(c for c in messaging.CONSUMERS if c.durable == messaging.JANITOR)
    assert run(reconcile()) == (janitor.max_deliver + 5, janitor.max_deliver)
