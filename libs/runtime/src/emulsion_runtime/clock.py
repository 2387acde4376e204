"""Job versions from one hybrid logical clock that every minting replica shares.

A version's time part (a ULID's first 48 bits) orders everything: a later version
commits over an earlier one, a tombstone's version keeps every older item from bringing
an asset back. Minted from each replica's own wall clock, that order was only as good
as the clocks: an API two minutes fast minted versions that sorted after a delete made a
minute later elsewhere, so the older upload came back.

So every version is minted here, from the NATS KV bucket EMULSION_CLOCK (key
`versions`: the last millisecond handed out): read it, take
`next = max(now_ms, stored + 1)`, write `next + count - 1` with compare-and-set on the
revision read, and try again on a conflict. A mint that completed before another began
was written before that one read, so the later mint's `next` is strictly greater:
versions follow the real order of minting whatever the replicas' clocks say. A fast
clock drags the shared one ahead (versions then run at its time, still unique and
ordered); a slow one simply follows the stored value.

Without NATS no version can be minted: callers refuse the work (the API answers 503 with
Retry-After) rather than fall back to a clock that may be wrong.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from typing import Final

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from emulsion_contracts import keys

log = logging.getLogger(__name__)

CLOCK_KEY: Final = "versions"
# A minter whose wall clock is this far behind the shared one is worth a warning: its
# host's time is wrong (the versions stay right; the warning is for the operator).
BEHIND_WARNING_MS: Final = 60_000
# Conflicts only come from concurrent mints, each of which succeeds; this bound is
# reached only if something rewrites the key in a loop.
MAX_ATTEMPTS: Final = 100
# A loser waits a random moment before it reads again, so a few minters that keep
# meeting spread out instead of one of them losing every round (seen under load with
# eight at once): up to 1 ms after the first conflict, doubling to at most 50 ms.
BACKOFF_FIRST_SECONDS: Final = 0.001
BACKOFF_MAX_SECONDS: Final = 0.05


class ClockContended(RuntimeError):
    """Compare-and-set lost MAX_ATTEMPTS times in a row."""


def next_millis(now_ms: int, stored_ms: int | None) -> int:
    """The first millisecond of the next mint: never before `stored_ms + 1`."""
    return now_ms if stored_ms is None else max(now_ms, stored_ms + 1)


async def mint_versions(
    kv: KeyValue, count: int = 1, now: Callable[[], float] = time.time
) -> list[str]:
    """`count` job versions (ULIDs), one millisecond apart, after every version minted so far.

    Raises nats errors when the bucket cannot be reached, ClockContended when the
    compare-and-set keeps losing.
    """
    if count < 1:
        raise ValueError("mint at least one version")
    for attempt in range(MAX_ATTEMPTS):
        if attempt:
            ceiling = min(BACKOFF_MAX_SECONDS, BACKOFF_FIRST_SECONDS * 2 ** (attempt - 1))
            await asyncio.sleep(random.uniform(0, ceiling))  # noqa: S311 (jitter, not a secret)
        try:
            entry = await kv.get(CLOCK_KEY)
        except KeyNotFoundError:
            stored, revision = None, None
        else:
            stored, revision = int((entry.value or b"0").decode()), entry.revision
        now_ms = int(now() * 1000)
        first = next_millis(now_ms, stored)
        last = first + count - 1
        try:
            if revision is None:
                await kv.create(CLOCK_KEY, str(last).encode())
            else:
                await kv.update(CLOCK_KEY, str(last).encode(), last=revision)
        except KeyWrongLastSequenceError:
            continue  # another mint came between the read and the write: read again
        if stored is not None and stored - now_ms > BEHIND_WARNING_MS:
            log.warning(
                "this host's clock is %.1f s behind the shared version clock",
                (stored - now_ms) / 1000,
            )
        return [keys.new_ulid(millis=millis) for millis in range(first, last + 1)]
    raise ClockContended(f"the version clock changed under {MAX_ATTEMPTS} mints in a row")


async def mint_version(kv: KeyValue, now: Callable[[], float] = time.time) -> str:
    """One job version; see `mint_versions`."""
    [version] = await mint_versions(kv, 1, now)
    return version
