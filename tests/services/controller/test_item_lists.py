"""How the controller gets a job's items (Bus.with_items), against a stand-in reader (no I/O):
inline items as they are, a referenced list read once and kept while bounded, a list
missing or altered a final InvalidSpec, NATS away a retry (ItemsUnavailable)."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, cast

import pytest

from emulsion_contracts import jobrecords
from emulsion_contracts.ingestjob import IngestJob, InvalidSpec, ItemsRef, JobItem
from emulsion_controller.jetstream import ITEM_LISTS_KEPT, Bus, ItemsUnavailable
from emulsion_runtime import records_store

ITEMS = (JobItem(source="staging/gallery/01JQ0000000000000000000000/a.jpg", asset="a.jpg"),)


def job(uid: str, inline: bool = False) -> IngestJob:
    body = jobrecords.encode_items(ITEMS)
    ref = ItemsRef(name=f"ns/{uid}", sha256=hashlib.sha256(body).hexdigest(), count=1)
    spec: dict[str, Any] = {"collection": "gallery"}
    if inline:
        spec["items"] = [item.to_body() for item in ITEMS]
    else:
        spec["itemsRef"] = ref.to_body()
    return IngestJob.read({"metadata": {"namespace": "ns", "name": uid, "uid": uid}, "spec": spec})


def a_bus() -> Bus:
    return Bus(cast(Any, None), cast(Any, None), cast(Any, None), cast(Any, None), b"k")


def test_a_referenced_list_is_read_once_and_the_cache_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reads: list[str] = []

    async def get_items(js: Any, ref: ItemsRef) -> tuple[JobItem, ...]:
        reads.append(ref.name)
        return ITEMS

    monkeypatch.setattr(records_store, "get_items", get_items)

    async def scenario() -> None:
        bus = a_bus()
        for _ in range(3):
            loaded = await bus.with_items(job("first"))
            assert loaded.spec.loaded_items() == ITEMS
        assert reads == ["ns/first"]
        inline = job("inline", inline=True)
        assert await bus.with_items(inline) is inline  # nothing to read
        for index in range(ITEM_LISTS_KEPT + 1):
            await bus.with_items(job(f"j{index}"))
        assert len(bus._item_lists) == ITEM_LISTS_KEPT
        await bus.with_items(job("first"))  # pushed out, so read again
        assert reads.count("ns/first") == 2
        bus.forget_items("first")
        assert "first" not in bus._item_lists

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (records_store.ItemsMissing("item list ns/x is not in EMULSION_INGESTS"), InvalidSpec),
        (records_store.ItemsCorrupt("item list ns/x does not match its sha256"), InvalidSpec),
        (TimeoutError("nats: timeout"), ItemsUnavailable),
    ],
)
def test_a_list_that_cannot_be_had_is_final_or_retried(
    monkeypatch: pytest.MonkeyPatch, error: Exception, raised: type[Exception]
) -> None:
    async def get_items(js: Any, ref: ItemsRef) -> tuple[JobItem, ...]:
        raise error

    monkeypatch.setattr(records_store, "get_items", get_items)
    with pytest.raises(raised) as caught:
        asyncio.run(a_bus().with_items(job("x")))
    assert str(error) in str(caught.value)
    if raised is InvalidSpec:
        assert str(caught.value).startswith("spec.itemsRef: ")
