"""The streams, durables and buckets the services create, against the permission table."""

from __future__ import annotations

from emulsion_contracts import natsauth, wire
from emulsion_runtime import messaging


def test_the_table_names_what_the_bootstrap_creates_in_its_order() -> None:
    assert tuple(s.name for s in messaging.STREAMS) == natsauth.STREAMS
    assert tuple(b.name for b in messaging.BUCKETS) == natsauth.BUCKETS
    assert tuple((c.stream, c.durable) for c in messaging.CONSUMERS) == natsauth.DURABLES


def test_the_bootstrap_covers_every_stream_bucket_and_durable() -> None:
    controller = set(natsauth.IDENTITIES["controller"].publish)
    for stream in (*(s.name for s in messaging.STREAMS), *(b.stream for b in messaging.BUCKETS)):
        assert f"$JS.API.STREAM.CREATE.{stream}" in controller
        assert f"$JS.API.STREAM.UPDATE.{stream}" in controller
    for consumer in messaging.CONSUMERS:
        assert f"$JS.API.CONSUMER.DURABLE.CREATE.{consumer.stream}.{consumer.durable}" in controller


def test_every_durable_is_bound_by_exactly_one_identity_that_may_fetch_and_ack_it() -> None:
    for consumer in messaging.CONSUMERS:
        binders = [
            i
            for i in natsauth.IDENTITIES.values()
            if (consumer.stream, consumer.durable) in i.consumers
        ]
        assert len(binders) == 1, consumer.durable
        publish = binders[0].publish
        assert f"$JS.API.CONSUMER.MSG.NEXT.{consumer.stream}.{consumer.durable}" in publish
        assert f"$JS.ACK.{consumer.stream}.{consumer.durable}.>" in publish


def test_the_clock_bucket_is_read_and_written_by_the_api_and_the_controller_only() -> None:
    writers = {i.name for i in natsauth.IDENTITIES.values() if "$KV.EMULSION_CLOCK.>" in i.publish}
    assert writers == {"api", "controller"}
    assert wire.CLOCK_BUCKET in {b.name for b in messaging.BUCKETS}
