"""Every work message the controller publishes carries its signature: first dispatches
and the lost-result re-dispatches (a fresh Nats-Msg-Id, the same subject and body) alike,
since both leave through `Bus.publish`."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

from emulsion_contracts import keys, wire, worksigning
from emulsion_contracts.ingestjob import IngestJob
from emulsion_controller.dispatch import work_messages
from emulsion_controller.jetstream import Bus

KEY = b"s" * 40


@dataclass
class Ack:
    duplicate: bool = False


@dataclass
class RecordingJetStream:
    published: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)

    async def publish(self, subject: str, payload: bytes, headers: dict[str, str]) -> Ack:
        self.published.append((subject, payload, headers))
        return Ack()


def job(items: int = 3) -> IngestJob:
    return IngestJob.read(
        {
            "metadata": {"name": "holiday", "namespace": "photos", "uid": "uid-1"},
            "spec": {
                "collection": "gallery",
                "items": [
                    {
                        "source": keys.staging_key("gallery", keys.new_ulid(), f"{i}.jpg"),
                        "asset": f"{i}.jpg",
                    }
                    for i in range(items)
                ],
            },
        }
    )


def publish_all(messages: Any) -> list[tuple[str, bytes, dict[str, str]]]:
    js = RecordingJetStream()
    bus = Bus(cast(Any, None), cast(Any, js), cast(Any, None), cast(Any, None), KEY)
    assert asyncio.run(bus.publish(messages)) == len(messages)
    return js.published


def test_dispatched_and_redispatched_work_is_signed_over_the_same_subject_and_body() -> None:
    ingest, version = job(), keys.new_ulid()
    first = publish_all(work_messages(ingest, version))
    again = publish_all(work_messages(ingest, version, only={1}, msg_id_suffix="r1-x"))

    for subject, body, headers in (*first, *again):
        assert subject == wire.work_subject("photos", "holiday")
        assert worksigning.verify(KEY, subject, body, headers[worksigning.HEADER])
        # Another key (another installation, an attacker's guess) does not verify it.
        assert not worksigning.verify(b"x" * 40, subject, body, headers[worksigning.HEADER])
    [(_, body, headers)] = again
    assert headers[wire.HEADER_MSG_ID] == "uid-1/1/r1-x"
    # The re-dispatch carries the same body as the first dispatch of that item.
    assert body == first[1][1]
