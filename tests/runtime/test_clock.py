"""The shared version clock: every mint follows every mint completed before it, whatever
each minter's wall clock says, and a lost compare-and-set is tried again."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError

from emulsion_contracts import keys
from emulsion_runtime import clock

BASE_MS = 1_790_000_000_000


@dataclass
class Entry:
    value: bytes
    revision: int


class MemoryKv:
    """A KV bucket's compare-and-set semantics in memory; `interleave` lets other minters
    write between one mint's read and its write (the conflict the retry is for)."""

    def __init__(self) -> None:
        self.value: bytes | None = None
        self.revision = 0
        self.interleave: list[int] = []

    async def get(self, key: str) -> Entry:
        assert key == clock.CLOCK_KEY
        if self.value is None:
            raise KeyNotFoundError
        return Entry(self.value, self.revision)

    def _write(self, value: bytes) -> int:
        self.value, self.revision = value, self.revision + 1
        return self.revision

    async def _maybe_interleave(self) -> None:
        if self.interleave:
            stored = int(self.value or b"0")
            self._write(str(max(stored, self.interleave.pop(0))).encode())

    async def create(self, key: str, value: bytes) -> int:
        await self._maybe_interleave()
        if self.value is not None:
            raise KeyWrongLastSequenceError
        return self._write(value)

    async def update(self, key: str, value: bytes, last: int) -> int:
        await self._maybe_interleave()
        if last != self.revision:
            raise KeyWrongLastSequenceError
        return self._write(value)


def millis(version: str) -> int:
    return keys.ulid_millis(version)


def mint(kv: MemoryKv, now_ms: int, count: int = 1) -> list[str]:
    return asyncio.run(clock.mint_versions(kv, count, now=lambda: now_ms / 1000))  # type: ignore[arg-type]


@given(st.lists(st.integers(-300_000, 300_000), min_size=1, max_size=30))
def test_each_mint_follows_every_earlier_one_whatever_the_clocks(skews: list[int]) -> None:
    # Each mint on a host whose clock is off by its skew (minutes either way), one after
    # another as requests on different replicas would be: the versions still increase.
    kv = MemoryKv()
    minted = [mint(kv, BASE_MS + skew)[0] for skew in skews]
    assert minted == sorted(minted) and len(set(minted)) == len(minted)
    stamps = [millis(v) for v in minted]
    assert all(b > a for a, b in itertools.pairwise(stamps))
    # A correct clock is never held back by more than what was already handed out.
    assert stamps[0] == BASE_MS + skews[0]


@given(st.integers(0, 200_000), st.integers(1, 5))
def test_a_slow_clock_mints_after_a_fast_one(ahead_ms: int, count: int) -> None:
    kv = MemoryKv()
    [fast] = mint(kv, BASE_MS + ahead_ms)
    later = mint(kv, BASE_MS, count)
    assert [millis(v) for v in later] == [BASE_MS + ahead_ms + 1 + part for part in range(count)]
    assert all(v > fast for v in later)


@given(st.lists(st.integers(0, 10**7), min_size=1, max_size=5))
def test_a_lost_compare_and_set_reads_again_and_still_follows(writes: list[int]) -> None:
    kv = MemoryKv()
    mint(kv, BASE_MS)
    # Other minters write between this mint's read and its write, once per entry.
    kv.interleave = [BASE_MS + w for w in writes]
    [version] = mint(kv, BASE_MS)
    assert millis(version) > max(BASE_MS, *(BASE_MS + w for w in writes))
    assert int(kv.value or b"0") == millis(version)


def test_next_millis_never_goes_back() -> None:
    assert clock.next_millis(5, None) == 5
    assert clock.next_millis(5, 9) == 10
    assert clock.next_millis(50, 9) == 50


@given(st.integers(0, 2**48 - 1))
def test_a_minted_millisecond_is_the_ulid_s_time_part_exactly(stamp: int) -> None:
    assert keys.ulid_millis(keys.new_ulid(millis=stamp)) == stamp
