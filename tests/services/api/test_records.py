"""The API's side of a job's records: an unreachable or silent NATS is a 503 with
Retry-After (a client retries it), never a hang or a 500; item lists are cached by their
digest in a cache bounded by the items it holds."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nats.errors import TimeoutError as NatsTimeout

from emulsion_api import records as records_module
from emulsion_api.errors import ApiError
from emulsion_api.jetstream import Bus
from emulsion_api.records import ItemsCache, Records
from emulsion_contracts.ingestjob import IngestJob, ItemsRef, JobItem, ObjectMeta
from emulsion_runtime.settings import NatsSettings

ITEM = JobItem(source="staging/c/01JQ0000000000000000000000/p.jpg", asset="p.jpg")


class UnreachableJetStream:
    async def object_store(self, bucket: str) -> Any:
        raise NatsTimeout

    async def get_last_msg(self, stream: str, subject: str) -> Any:
        raise NatsTimeout

    async def key_value(self, bucket: str) -> Any:
        raise NatsTimeout


class HangingJetStream:
    async def object_store(self, bucket: str) -> Any:
        await asyncio.Event().wait()

    async def get_last_msg(self, stream: str, subject: str) -> Any:
        await asyncio.Event().wait()

    async def key_value(self, bucket: str) -> Any:
        await asyncio.Event().wait()


def _job() -> IngestJob:
    ref = ItemsRef(name="default/j", sha256="0" * 64, count=1)
    return IngestJob.model_validate(
        {
            "metadata": ObjectMeta(name="j", uid="u").model_dump(),
            "spec": {"collection": "c", "itemsRef": ref.to_body()},
        }
    )


def _calls(records: Records) -> list[Any]:
    return [
        records.put_items("j", [ITEM]),
        records.items(_job()),
        records.outcomes("j", "u"),
        records.failures("j", "u", -1, 10),
        records.summary("j"),
        records.items_of_gone_job("j"),
    ]


def test_before_nats_was_reached_every_call_is_a_503_with_retry_after() -> None:
    records = Records(Bus(NatsSettings(nats_url="nats://127.0.0.1:1")), "default")
    for call in _calls(records):
        with pytest.raises(ApiError) as refused:
            asyncio.run(call)
        assert (refused.value.status, refused.value.code) == (503, "unavailable")
        assert refused.value.headers["Retry-After"].isdigit()


@pytest.mark.parametrize(
    "js", [UnreachableJetStream(), HangingJetStream()], ids=["error", "no-answer"]
)
def test_a_nats_outage_is_a_503_within_the_timeout(js: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(records_module, "RECORDS_TIMEOUT", 0.2)
    bus = Bus(NatsSettings(nats_url="nats://127.0.0.1:1"))
    bus._js = js  # connected once, then NATS went away
    records = Records(bus, "default")
    for call in _calls(records):
        with pytest.raises(ApiError) as refused:
            asyncio.run(call)
        assert (refused.value.status, refused.value.code) == (503, "unavailable")
        assert "Retry-After" in refused.value.headers


def test_inline_items_need_no_nats() -> None:
    records = Records(Bus(NatsSettings(nats_url="nats://127.0.0.1:1")), "default")
    job = IngestJob.model_validate(
        {"metadata": {"name": "j"}, "spec": {"collection": "c", "items": [ITEM.to_body()]}}
    )
    assert asyncio.run(records.items(job)) == (ITEM,)


@given(sizes=st.lists(st.integers(0, 40), max_size=60), bound=st.integers(1, 100))
def test_the_cache_holds_at_most_its_bound_and_drops_the_least_recent(
    sizes: list[int], bound: int
) -> None:
    cache = ItemsCache(bound)
    for number, size in enumerate(sizes):
        cache.put(f"{number:064x}", (ITEM,) * size)
        held = sum(len(cache.get(f"{n:064x}") or ()) for n in range(number + 1))
        assert held <= bound
        # What was just put is kept, unless it alone is over the bound.
        assert (cache.get(f"{number:064x}") is not None) == (size <= bound)
