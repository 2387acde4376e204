"""Without NATS no version is minted and none is made up: the API answers 503 with
Retry-After, so a client tries again, instead of falling back to its own clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import KeyNotFoundError

from emulsion_api import jetstream as jetstream_module
from emulsion_api.errors import ApiError
from emulsion_api.jetstream import Bus
from emulsion_contracts import keys
from emulsion_runtime.settings import NatsSettings


class UnreachableKv:
    async def get(self, key: str) -> Any:
        raise NatsTimeout


class HangingKv:
    async def get(self, key: str) -> Any:
        await asyncio.Event().wait()


def test_before_nats_was_reached_a_mint_is_refused_with_retry_after() -> None:
    bus = Bus(NatsSettings(nats_url="nats://127.0.0.1:1"))
    assert not bus.connected_once
    with pytest.raises(ApiError) as refused:
        asyncio.run(bus.mint_versions(1))
    assert (refused.value.status, refused.value.code) == (503, "unavailable")
    assert refused.value.headers["Retry-After"].isdigit()


@pytest.mark.parametrize("kv", [UnreachableKv(), HangingKv()], ids=["error", "no-answer"])
def test_a_nats_outage_is_a_503_with_retry_after_within_the_mint_timeout(
    kv: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jetstream_module, "MINT_TIMEOUT", 0.2)
    bus = Bus(NatsSettings(nats_url="nats://127.0.0.1:1"))
    bus._versions = kv  # connected once, then NATS went away
    with pytest.raises(ApiError) as refused:
        asyncio.run(bus.mint_versions(2))
    assert (refused.value.status, refused.value.code) == (503, "unavailable")
    assert "Retry-After" in refused.value.headers


class MemoryKv:
    def __init__(self) -> None:
        self.value: bytes | None = None
        self.revision = 0

    async def get(self, key: str) -> Any:
        if self.value is None:
            raise KeyNotFoundError

        class Entry:
            value = self.value
            revision = self.revision

        return Entry()

    async def create(self, key: str, value: bytes) -> int:
        self.value, self.revision = value, 1
        return 1

    async def update(self, key: str, value: bytes, last: int) -> int:
        self.value, self.revision = value, self.revision + 1
        return self.revision


def test_the_parts_of_one_request_get_consecutive_increasing_versions() -> None:
    bus = Bus(NatsSettings(nats_url="nats://127.0.0.1:1"))
    bus._versions = MemoryKv()  # type: ignore[assignment]
    first = asyncio.run(bus.mint_versions(3))
    [after] = asyncio.run(bus.mint_versions(1))
    stamps = [keys.ulid_millis(v) for v in first]
    # One millisecond apart, so the parts sort in request order; the next request after.
    assert stamps == [stamps[0] + step for step in range(3)]
    assert keys.ulid_millis(after) > stamps[-1]
