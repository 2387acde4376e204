"""Per-token limits: presigns and notifies per second, items in flight, open follows.

Each limit is configured per token (`EMULSION_API_TOKEN_LIMITS[_FILE]`, chart
`apiTokens.limits`: a `default` for every token and overrides keyed by a token's
SHA-256), re-read with the tokens. A request over a limit is answered 429 with
`Retry-After` and an RFC 9457 problem `rate_limited` whose `limit` names the limit.

The state is in-process, per API pod: token buckets and open-follow counts keyed by the
token's identity (the first 16 hex digits of its SHA-256, as recorded with its uploads).
No shared store: a limit is then a limit per pod, so a token may reach `limit x replicas`
in all, and the defaults are set so that product is still harmless. A shared counter
(NATS KV, Redis) would cost a round trip on every presign and notify, and a store that
can fail in front of every write, for precision nobody needs: these limits keep one
token from crowding out the rest, they are not billing.

Memory is bounded: buckets of tokens idle long enough to be full again are dropped (a
fresh bucket is full, so dropping one changes nothing), and past `MAX_TRACKED` tokens
the least recently used goes first. Follow counts exist only while a follow is open.

Items in flight are counted from the token's unfinished IngestJobs (the API labels every
job it makes with the token's identity), listed page by page, plus what this pod admitted
since: no controller change, no counter to keep in step with job deletion and TTL
expiry. Items only leave flight, so a count plus this pod's admissions is an upper bound:
a request under it is admitted without listing, and the jobs are listed again only when
that bound would refuse (at most once per `IN_FLIGHT_REFRESH_SECONDS`) or the count is
older than `IN_FLIGHT_MAX_AGE_SECONDS`. A token well under its limit costs one list a
minute per pod while it notifies; only a refusal is decided on a fresh count.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, Literal

from prometheus_client import Counter
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from emulsion_api import jobs
from emulsion_api.apiserver import Kube
from emulsion_api.errors import ApiError

LimitName = Literal["presigns_per_second", "notifies_per_second", "items_in_flight", "watches"]

# Tokens whose buckets are kept at most; a deployment has tens of tokens, not thousands.
MAX_TRACKED: Final = 10_000
# How stale a token's count of items in flight may be before a refusal lists its jobs.
IN_FLIGHT_REFRESH_SECONDS: Final = 2.0
# How long a count serves at all (other pods admit items this pod does not see).
IN_FLIGHT_MAX_AGE_SECONDS: Final = 60.0
# Jobs per apiserver page while counting items in flight: few, as in reads.py (a job
# written with kubectl may still carry a thousand items inline).
IN_FLIGHT_PAGE: Final = 10
# What a client over its items in flight is told to wait: jobs finish in seconds.
IN_FLIGHT_RETRY_SECONDS: Final = 5
# Distinct token labels on the throttling metric; the rest are counted as "other".
METRIC_TOKENS_MAX: Final = 50

THROTTLED = Counter(
    "emulsion_api_throttled_requests_total",
    "Requests answered 429 by a per-token limit, by token identity (first 16 hex of its "
    "SHA-256; at most 50 tokens per pod, then 'other') and limit",
    ["token", "limit"],
)


class TokenLimits(BaseModel):
    """One token's limits (chart `apiTokens.limits.default` and `.tokens.<sha256>`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    # Files presigned per second (a batch of 500 takes 500), and the burst: a whole
    # batch of the largest size passes at once.
    presigns_per_second: float = Field(default=200.0, gt=0, alias="presignsPerSecond")
    presign_burst: int = Field(default=10_000, ge=1, alias="presignBurst")
    # POST /v1/ingests per second, and the burst.
    notifies_per_second: float = Field(default=20.0, gt=0, alias="notifiesPerSecond")
    notify_burst: int = Field(default=200, ge=1, alias="notifyBurst")
    # Items of the token's unfinished jobs; a request is admitted while under it (one
    # request alone is always admitted, so a limit below a request's size never wedges).
    items_in_flight: int = Field(default=50_000, ge=1, alias="itemsInFlight")
    # Open event streams and long polls (`?wait=`) at once, per API pod.
    watches: int = Field(default=16, ge=1, alias="watches")
    # Whether the token may ask for `priority: interactive` (work taken before bulk work
    # whatever its size); any token may ask for `bulk`, and small jobs are interactive anyway.
    interactive: bool = Field(default=False, alias="interactive")


class LimitsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default: dict[str, Any] = {}
    tokens: dict[str, dict[str, Any]] = {}


DEFAULT_LIMITS: Final = TokenLimits()


@dataclass(frozen=True)
class LimitTable:
    """Every token's limits: `default`, and overrides by the token's full hex SHA-256."""

    default: TokenLimits = DEFAULT_LIMITS
    tokens: tuple[tuple[str, TokenLimits], ...] = ()

    def of(self, digest: str) -> TokenLimits:
        for known, limits in self.tokens:
            if known == digest:
                return limits
        return self.default


def parse_limits(text: str | None) -> LimitTable:
    """The limits' JSON, `{"default": {...}, "tokens": {"<sha256>": {...}}}` (camelCase
    names as in the chart); a token's entry overrides the default field by field. Raises
    ValueError naming what is wrong."""
    if text is None or not text.strip():
        return LimitTable()
    try:
        raw = LimitsFile.model_validate(json.loads(text))
        default = TokenLimits.model_validate(raw.default)
        tokens = []
        for digest, fields in raw.tokens.items():
            if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                raise ValueError(f"{digest[:16]!r}... is not a token's hex SHA-256")
            merged = default.model_dump(by_alias=True) | fields
            tokens.append((digest, TokenLimits.model_validate(merged)))
    except ValidationError as error:
        raise ValueError(f"invalid limits: {error}") from None
    except json.JSONDecodeError as error:
        raise ValueError(f"not JSON: {error}") from None
    return LimitTable(default, tuple(tokens))


@dataclass
class TokenBucket:
    """`rate` tokens a second up to `burst`; starts full."""

    rate: float
    burst: float
    level: float
    stamp: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        return cls(rate, burst, burst, now)

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(self.burst, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, cost: float, now: float) -> float:
        """Take `cost` (at most the burst: a request larger than the burst passes when the
        bucket is full, or it never would); 0.0 when taken, else the seconds until it can
        be, with nothing taken."""
        self.refill(now)
        cost = min(cost, self.burst)
        if self.level >= cost:
            self.level -= cost
            return 0.0
        return (cost - self.level) / self.rate

    def idle_full(self, now: float) -> bool:
        return self.level + (now - self.stamp) * self.rate >= self.burst


# The tokens with a label of their own on THROTTLED, for the life of the process.
_METRIC_TOKENS: set[str] = set()


def count_throttled(owner: str, limit: LimitName) -> None:
    """Bounded cardinality: the first METRIC_TOKENS_MAX tokens throttled get a label of
    their own, any later one is counted as "other" (a handful of tokens misbehave, and
    those are the ones an operator looks for)."""
    if owner not in _METRIC_TOKENS and len(_METRIC_TOKENS) < METRIC_TOKENS_MAX:
        _METRIC_TOKENS.add(owner)
    THROTTLED.labels(owner if owner in _METRIC_TOKENS else "other", limit).inc()


def retry_after(seconds: float) -> str:
    """Whole seconds (RFC 9110 delta-seconds), at least 1."""
    return str(max(1, math.ceil(seconds)))


def throttled(owner: str, limit: LimitName, seconds: float, detail: str) -> ApiError:
    count_throttled(owner, limit)
    return ApiError(
        429,
        "rate_limited",
        f"{detail}; retry after {retry_after(seconds)} s",
        headers={"Retry-After": retry_after(seconds)},
        limit=limit,
    )


class Limiter:
    """The per-token limits of one API pod (see the module docstring)."""

    def __init__(self, max_watches: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: OrderedDict[tuple[str, str], TokenBucket] = OrderedDict()
        # Open follows per token, and in all (the pod's watch connections).
        self._follows: dict[str, int] = {}
        self._follows_total = 0
        self._max_follows = max_watches
        # The pod's last slots are kept for tokens that hold none: however many busy
        # tokens there are, together they never shut a newcomer out.
        self._newcomer_reserve = max(1, max_watches // 8)
        # owner -> (items in flight when counted + admitted since, when counted)
        self._in_flight: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def _bucket(self, owner: str, kind: str, rate: float, burst: float) -> TokenBucket:
        now = self._clock()
        key = (owner, kind)
        # Before this token's bucket is looked up: its own bucket, full, would go too.
        self._evict(now)
        bucket = self._buckets.get(key)
        if bucket is None or bucket.rate != rate or bucket.burst != burst:
            # New, or the token's limits changed (a reload): start from a full bucket.
            bucket = TokenBucket.full(rate, burst, now)
            self._buckets[key] = bucket
        self._buckets.move_to_end(key)
        return bucket

    def _evict(self, now: float) -> None:
        # Oldest first: drop buckets that are full again, and anything past the cap.
        while self._buckets:
            key, oldest = next(iter(self._buckets.items()))
            if len(self._buckets) >= MAX_TRACKED or oldest.idle_full(now):
                del self._buckets[key]
            else:
                break

    def tracked(self) -> int:
        return len(self._buckets) + len(self._in_flight)

    def presigns(self, owner: str, limits: TokenLimits, files: int) -> None:
        bucket = self._bucket(owner, "presigns", limits.presigns_per_second, limits.presign_burst)
        wait = bucket.take(files, self._clock())
        if wait:
            raise throttled(
                owner,
                "presigns_per_second",
                wait,
                f"this token may presign {limits.presigns_per_second:g} files a second "
                f"(bursts of {limits.presign_burst})",
            )

    def notifies(self, owner: str, limits: TokenLimits) -> None:
        bucket = self._bucket(owner, "notifies", limits.notifies_per_second, limits.notify_burst)
        wait = bucket.take(1, self._clock())
        if wait:
            raise throttled(
                owner,
                "notifies_per_second",
                wait,
                f"this token may make {limits.notifies_per_second:g} ingest requests a "
                f"second (bursts of {limits.notify_burst})",
            )

    @contextlib.contextmanager
    def following(self, owner: str, limits: TokenLimits) -> Iterator[None]:
        """Hold one of the token's open follows (an event stream or a long poll) for the
        block; a token at its limit is refused before the pod's total, so it never takes
        the slots other tokens would have, and a token that holds one already may not
        take the pod's last few (kept for tokens that hold none)."""
        held = self._follows.get(owner, 0)
        if held >= limits.watches:
            raise throttled(
                owner,
                "watches",
                1,
                f"this token has {held} event streams and long polls open; at most "
                f"{limits.watches}",
            )
        if held and self._follows_total >= self._max_follows - self._newcomer_reserve:
            raise throttled(
                owner,
                "watches",
                1,
                f"this token has {held} event streams and long polls open and this API "
                "pod's are nearly all taken; the last are kept for other tokens",
            )
        if self._follows_total >= self._max_follows:
            raise ApiError(
                429,
                "too_many_watches",
                "too many open watches; retry later",
                headers={"Retry-After": "1"},
            )
        self._follows[owner] = held + 1
        self._follows_total += 1
        try:
            yield
        finally:
            self._follows_total -= 1
            left = self._follows[owner] - 1
            if left:
                self._follows[owner] = left
            else:
                del self._follows[owner]

    def follows(self, owner: str) -> int:
        return self._follows.get(owner, 0)

    async def admit_items(
        self,
        owner: str,
        limits: TokenLimits,
        items: int,
        count: Callable[[], Awaitable[int]],
    ) -> None:
        """Admit `items` more items in flight for the token, or raise 429. `count` lists
        the token's unfinished items: called when the pod has no count younger than
        IN_FLIGHT_MAX_AGE_SECONDS, or when the one it has would refuse and is older than
        IN_FLIGHT_REFRESH_SECONDS."""
        now = self._clock()
        known = self._in_flight.get(owner)
        if (
            known is None
            or now - known[1] >= IN_FLIGHT_MAX_AGE_SECONDS
            or (
                known[0] + items > limits.items_in_flight
                and now - known[1] >= IN_FLIGHT_REFRESH_SECONDS
            )
        ):
            known = (await count(), self._clock())
        in_flight, stamp = known
        if in_flight and in_flight + items > limits.items_in_flight:
            self._remember(owner, (in_flight, stamp))
            raise throttled(
                owner,
                "items_in_flight",
                IN_FLIGHT_RETRY_SECONDS,
                f"this token has {in_flight} items in flight; at most "
                f"{limits.items_in_flight} (this request adds {items})",
            )
        self._remember(owner, (in_flight + items, stamp))

    async def admit_jobs(self, kube: Kube, owner: str, limits: TokenLimits, items: int) -> None:
        """`admit_items`, counting the token's jobs through `kube`."""
        await self.admit_items(owner, limits, items, lambda: items_in_flight(kube, owner))

    def _remember(self, owner: str, value: tuple[int, float]) -> None:
        self._in_flight[owner] = value
        self._in_flight.move_to_end(owner)
        now = self._clock()
        while self._in_flight:
            oldest, (_, stamp) = next(iter(self._in_flight.items()))
            if len(self._in_flight) > MAX_TRACKED or now - stamp >= IN_FLIGHT_MAX_AGE_SECONDS:
                del self._in_flight[oldest]
            else:
                break


async def count_in_flight(
    list_page: Callable[[str, int, str | None], Awaitable[tuple[list[Any], str | None]]],
    selector: str,
    remaining: Callable[[Any], int],
) -> int:
    """Sum `remaining(job)` over every job `selector` lists, a page at a time (memory is
    one page of jobs, whatever the token has)."""
    total = 0
    cursor: str | None = None
    while True:
        page, cursor = await list_page(selector, IN_FLIGHT_PAGE, cursor)
        total += sum(remaining(job) for job in page)
        if not cursor:
            return total


def _remaining(job: Any) -> int:
    summary = jobs.summary(job)
    return 0 if summary.finished else max(0, summary.total - summary.succeeded - summary.failed)


async def items_in_flight(kube: Kube, owner: str) -> int:
    """Items of the token's unfinished jobs, from the owner label the API gives its jobs
    (jobs written with kubectl carry none and are not counted: they are no token's)."""
    return await count_in_flight(kube.list_page, f"{jobs.LABEL_OWNER}={owner}", _remaining)
