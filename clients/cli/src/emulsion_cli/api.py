"""The Emulsion HTTP API, as the CLI uses it (httpx only; no server code is imported).

Every failure becomes one `CliError` line: the API unreachable, the token refused, or
the API's errors, RFC 9457 problems (`code`, `detail`, `errors`).

Retries (stamina): lost connections and 429/502/503/504 answers are tried again with
exponential backoff and jitter; when the answer carries `Retry-After`, that is the wait
(plus up to a second of jitter, so clients throttled together do not return together).

A token's own limits (429 `rate_limited`: presigns or notifies per second, items in
flight, open event streams) are not failures: the API did nothing, and says when to come
back. Such an answer is waited out (its Retry-After, capped) and the request sent again,
without spending a retry, for as long as THROTTLED_PATIENCE_SECONDS: a well-behaved run
under a tight limit goes slower and still finishes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import quote

import httpx
import stamina

from emulsion_cli.config import Config
from emulsion_cli.errors import (
    ApiRequestError,
    CliError,
    IngestExpired,
    Unreachable,
    UsageError,
)
from emulsion_cli.paging import Page, parse_page
from emulsion_cli.sse import Event, parse_stream

TIMEOUT: Final = httpx.Timeout(30.0, connect=5.0)
# An event stream is quiet between changes; the API sends a keep-alive every 15 s.
EVENTS_TIMEOUT: Final = httpx.Timeout(60.0, connect=5.0)
# The most failures the API gives per page.
FAILURES_PAGE_MAX: Final = 500
UPLOAD_TIMEOUT: Final = httpx.Timeout(300.0, connect=10.0)
# Retried: the apiserver throttling (429) or briefly away (503), and lost connections.
RETRYABLE_STATUS: Final = frozenset({429, 502, 503, 504})
# Tries per call; EMULSION_RETRIES overrides it (1: no retry, as a test of a dead API wants).
ATTEMPTS: Final = 5
BACKOFF_INITIAL_SECONDS: Final = 0.5
BACKOFF_MAX_SECONDS: Final = 10.0
JITTER_SECONDS: Final = 1.0
# A server asking for a longer pause than this is not coming back soon enough to wait for.
MAX_RETRY_AFTER_SECONDS: Final = 60.0
# Keys per `uploads/present` request: far under the API's batch limit (5,000 by default).
PRESENT_BATCH: Final = 500
RETRY_TIMEOUT_SECONDS: Final = 180.0
# How long one call keeps waiting out the token's own limits (429 rate_limited).
THROTTLED_PATIENCE_SECONDS: Final = 1800.0
# The wait when a throttled answer names none.
THROTTLED_DEFAULT_SECONDS: Final = 1.0

T = TypeVar("T")
Json = dict[str, Any]


@dataclass(frozen=True)
class Upload:
    key: str
    # The asset name the upload records: the file's name as the user wrote it (NFC).
    asset: str
    url: str
    fields: dict[str, str]


@dataclass(frozen=True)
class AcceptedItem:
    index: int  # position in the request
    job: str
    job_index: int
    upload_key: str
    asset: str


@dataclass(frozen=True)
class Accepted:
    name: str
    jobs: list[str]
    items: list[AcceptedItem]
    replayed: bool


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP-date (RFC 9110 10.2.3);
    None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def error_from_response(response: httpx.Response) -> ApiRequestError:
    retry_after = retry_after_seconds(response.headers.get("Retry-After"))
    if response.status_code == 401:
        return ApiRequestError(
            401,
            "unauthorized",
            "the token was refused; check EMULSION_TOKEN, --token-file or the config context",
        )
    try:
        body = response.json()
        # An RFC 9457 problem: `code` is stable, `detail` for people, `errors` the parts.
        code, message = str(body["code"]), str(body["detail"])
        details = body.get("errors") or []
        if code == "ingest_expired" and isinstance(body.get("ingest"), dict):
            return IngestExpired(message, body["ingest"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return ApiRequestError(
            response.status_code, "http_error", response.reason_phrase, retry_after
        )
    if details:
        first = details[0]
        where = f"{first.get('field')}: " if first.get("field") else ""
        more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
        message = f"{message} — {where}{first.get('message')}{more}"
    return ApiRequestError(response.status_code, code, message, retry_after)


def _asset_path(collection: str, asset: str) -> str:
    # Quoted, so a hostile name cannot turn into another path.
    return f"/v1/assets/{quote(collection, safe='')}/{quote(asset, safe='')}"


def retry_attempts(environ: Mapping[str, str] | None = None) -> int:
    """How many times a call is tried: EMULSION_RETRIES when set, else ATTEMPTS."""
    environ = os.environ if environ is None else environ
    value = environ.get("EMULSION_RETRIES")
    if value is None:
        return ATTEMPTS
    try:
        attempts = int(value)
    except ValueError:
        attempts = 0
    if attempts < 1:
        raise UsageError(f"EMULSION_RETRIES must be a whole number of tries, 1 or more: {value!r}")
    return attempts


def throttled_wait(error: ApiRequestError) -> float | None:
    """The pause before asking again when the token's own limit refused a call (429
    `rate_limited`): its Retry-After, capped, plus jitter; None for any other answer."""
    if error.status != 429 or error.code != "rate_limited":
        return None
    wait = error.retry_after if error.retry_after is not None else THROTTLED_DEFAULT_SECONDS
    return min(wait, MAX_RETRY_AFTER_SECONDS) + random.uniform(0, JITTER_SECONDS)  # noqa: S311


def retry_backoff(error: Exception) -> bool | float:
    """stamina's backoff hook: False gives up at once (a deterministic answer is not
    transient), True waits its exponential backoff, a number waits that many seconds."""
    if isinstance(error, ApiRequestError | UploadRefused):
        if error.status not in RETRYABLE_STATUS:
            return False
        if error.retry_after is None:
            return True
        return min(error.retry_after, MAX_RETRY_AFTER_SECONDS) + random.uniform(  # noqa: S311
            0, JITTER_SECONDS
        )
    return isinstance(error, Unreachable)


class UploadRefused(CliError):
    """The object store answered an upload with an error."""

    def __init__(self, message: str, status: int, retry_after: float | None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class Api:
    def __init__(self, config: Config, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.config = config
        self._client = httpx.AsyncClient(
            base_url=config.api_url,
            headers={"Authorization": f"Bearer {config.token}", "User-Agent": "emulsion-cli"},
            timeout=TIMEOUT,
            transport=transport,
        )
        # Presigned POSTs go straight to the object store and must not carry the token.
        self._storage = httpx.AsyncClient(timeout=UPLOAD_TIMEOUT, transport=transport)

    async def __aenter__(self) -> Api:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._client.aclose()
        await self._storage.aclose()

    def _unreachable(self, error: httpx.TransportError) -> CliError:
        return Unreachable(f"cannot reach the Emulsion API at {self.config.api_url}: {error!r}")

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        loop = asyncio.get_running_loop()
        patience = loop.time() + THROTTLED_PATIENCE_SECONDS
        while True:
            try:
                response = await self._client.request(method, path, **kwargs)
            except httpx.TransportError as error:
                raise self._unreachable(error) from error
            if not response.is_error:
                return response
            refused = error_from_response(response)
            wait = throttled_wait(refused)
            if wait is None or loop.time() + wait > patience:
                raise refused
            # The token's own limit: nothing was done; wait as told and ask again.
            await asyncio.sleep(wait)

    async def _with_retries(
        self,
        call: Callable[[], Awaitable[T]],
        on: Callable[[Exception], bool | float] = retry_backoff,
    ) -> T:
        async for attempt in stamina.retry_context(
            on=on,
            attempts=retry_attempts(),
            timeout=RETRY_TIMEOUT_SECONDS,
            wait_initial=BACKOFF_INITIAL_SECONDS,
            wait_max=BACKOFF_MAX_SECONDS,
            wait_jitter=JITTER_SECONDS,
        ):
            with attempt:
                return await call()
        raise AssertionError("stamina gives up by raising the last error")

    async def presign(self, collection: str, files: list[tuple[str, str, int]]) -> list[Upload]:
        """One presigned POST per (filename, content type, size), in the order given, for
        uploads to `collection` (only an ingest into it accepts them)."""
        body = {
            "collection": collection,
            "files": [{"filename": n, "content_type": t, "size": s} for n, t, s in files],
        }
        response = await self._with_retries(lambda: self._request("POST", "/v1/uploads", json=body))
        return [
            Upload(
                key=u["key"],
                asset=u.get("asset") or u["key"].rsplit("/", 1)[-1],
                url=u["url"],
                fields=dict(u["fields"]),
            )
            for u in response.json()["uploads"]
        ]

    async def uploads_present(self, keys: list[str]) -> list[str]:
        """Which of these staging keys hold an upload not yet ingested (in batches the API
        accepts); a key of an older layout or another collection never does."""
        present: list[str] = []
        for start in range(0, len(keys), PRESENT_BATCH):
            present.extend(await self._present(keys[start : start + PRESENT_BATCH]))
        return present

    async def _present(self, keys: list[str]) -> list[str]:
        body = {"keys": keys}
        response = await self._with_retries(
            lambda: self._request("POST", "/v1/uploads/present", json=body)
        )
        return [str(key) for key in response.json()["present"]]

    async def upload(self, upload: Upload, path: Path, content_type: str) -> None:
        """POST the file with the presigned form; a lost connection is retried (the form
        names one staging key, so a second POST only replaces the first)."""
        await self._with_retries(lambda: self._upload_once(upload, path, content_type))

    async def _upload_once(self, upload: Upload, path: Path, content_type: str) -> None:
        """Streamed from disk: a 30 MB original is never held in memory."""
        with path.open("rb") as stream:
            try:
                response = await self._storage.post(
                    upload.url,
                    data=upload.fields,
                    files={"file": (path.name, stream, content_type)},
                )
            except httpx.TransportError as error:
                raise Unreachable(f"upload of {path.name} failed: {error!r}") from error
        if response.is_error:
            # The object store answers in XML; its <Code> is the useful part.
            text = response.text
            code = text.split("<Code>", 1)[-1].split("</Code>", 1)[0] if "<Code>" in text else ""
            raise UploadRefused(
                f"upload of {path.name} refused by the object store: "
                f"{response.status_code} {code or response.reason_phrase}",
                response.status_code,
                retry_after_seconds(response.headers.get("Retry-After")),
            )

    async def ingest(
        self,
        collection: str,
        profile: str,
        items: list[tuple[str, str | None]],
        idempotency_key: str,
    ) -> Accepted:
        """Ingest (staging key, asset name) pairs; a None name lets the API use the name
        it recorded with the upload."""
        body = {
            "collection": collection,
            "profile": profile,
            "items": [
                {"upload_key": key} if asset is None else {"upload_key": key, "asset": asset}
                for key, asset in items
            ],
        }
        response = await self._with_retries(
            lambda: self._request(
                "POST", "/v1/ingests", json=body, headers={"Idempotency-Key": idempotency_key}
            )
        )
        accepted = response.json()
        return Accepted(
            name=accepted["name"],
            jobs=list(accepted["jobs"]),
            items=[
                AcceptedItem(i["index"], i["job"], i["job_index"], i["upload_key"], i["asset"])
                for i in accepted["items"]
            ],
            replayed=response.headers.get("Idempotent-Replayed") == "true",
        )

    async def job(
        self, name: str, item_offset: int = 0, item_limit: int = 0, *, urls: bool = True
    ) -> Json:
        """`GET /v1/ingests/<name>`; `urls=False` asks for the items' states and versions
        alone, without their originals' and outputs' download URLs."""
        params: dict[str, Any] = {"item_offset": item_offset, "item_limit": item_limit}
        if not urls:
            params["urls"] = "false"
        response = await self._with_retries(
            lambda: self._request("GET", f"/v1/ingests/{quote(name, safe='')}", params=params)
        )
        result: Json = response.json()
        return result

    async def job_items(self, name: str, page: int = 1000) -> list[Json]:
        """Every item of a job (state, version, reason; no URLs), page by page."""
        items: list[Json] = []
        while True:
            status = await self.job(name, item_offset=len(items), item_limit=page, urls=False)
            batch = status.get("items") or []
            items.extend(batch)
            if len(batch) < page or len(items) >= int(status.get("total") or 0):
                return items

    async def events(self, name: str) -> AsyncGenerator[Event, None]:
        """The job's server-sent events until the server ends the stream."""
        try:
            async with self._client.stream(
                "GET",
                f"/v1/ingests/{quote(name, safe='')}/events",
                headers={"Accept": "text/event-stream"},
                timeout=EVENTS_TIMEOUT,
            ) as response:
                if response.is_error:
                    await response.aread()
                    raise error_from_response(response)
                async for event in parse_stream(response.aiter_lines()):
                    yield event
        except httpx.TransportError as error:
            raise self._unreachable(error) from error

    async def _page(self, path: str, params: dict[str, Any], what: str) -> Page:
        response = await self._with_retries(lambda: self._request("GET", path, params=params))
        try:
            document = response.json()
        except ValueError:
            raise CliError(f"the API's {what} is not JSON") from None
        return parse_page(document, what)

    async def assets_page(
        self, collection: str, cursor: str | None, limit: int, state: str | None = None
    ) -> Page:
        """One page of `GET /v1/assets/<collection>` (newest first)."""
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        if state is not None:
            params["state"] = state
        path = f"/v1/assets/{quote(collection, safe='')}"
        return await self._page(path, params, f"list of assets in {collection!r}")

    async def jobs_page(self, collection: str | None, cursor: str | None, limit: int) -> Page:
        """One page of `GET /v1/ingests` (optionally of one collection)."""
        params: dict[str, Any] = {"limit": limit}
        if collection is not None:
            params["collection"] = collection
        if cursor is not None:
            params["cursor"] = cursor
        return await self._page("/v1/ingests", params, "list of ingest jobs")

    async def failures_page(self, name: str, cursor: str | None, limit: int) -> Page:
        """One page of `GET /v1/ingests/<name>/failures` (index order)."""
        params: dict[str, Any] = {"limit": min(limit, FAILURES_PAGE_MAX)}
        if cursor is not None:
            params["cursor"] = cursor
        path = f"/v1/ingests/{quote(name, safe='')}/failures"
        return await self._page(path, params, f"failures of {name!r}")

    async def asset(self, collection: str, asset: str) -> Json:
        response = await self._with_retries(
            lambda: self._request("GET", _asset_path(collection, asset))
        )
        result: Json = response.json()
        return result

    async def asset_or_none(self, collection: str, asset: str) -> Json | None:
        try:
            return await self.asset(collection, asset)
        except ApiRequestError as error:
            if error.status == 404:
                return None
            raise

    async def delete_asset(self, collection: str, asset: str) -> Json:
        # Retried only when the API said it did nothing (429/503): after a lost connection
        # the delete may have happened, and a second one would answer 404.
        response = await self._with_retries(
            lambda: self._request("DELETE", _asset_path(collection, asset)),
            on=lambda error: not isinstance(error, Unreachable) and retry_backoff(error),
        )
        result: Json = response.json()
        return result

    async def cancel(self, name: str) -> Json:
        """`DELETE /v1/ingests/<name>`: idempotent, so retried like a read."""
        response = await self._with_retries(
            lambda: self._request("DELETE", f"/v1/ingests/{quote(name, safe='')}")
        )
        result: Json = response.json()
        return result

    async def retry(self, name: str, include_deterministic: bool) -> Json:
        """`POST /v1/ingests/<name>/retry`: one retry job per job, so retried like a read
        (a repeat answers the same retry job)."""
        body = {"include_deterministic": include_deterministic}
        response = await self._with_retries(
            lambda: self._request("POST", f"/v1/ingests/{quote(name, safe='')}/retry", json=body)
        )
        result: Json = response.json()
        return result


def event_json(event: Event) -> Json:
    try:
        data = json.loads(event.data)
    except ValueError as error:
        raise CliError(f"the API sent a malformed {event.event!r} event") from error
    if not isinstance(data, dict):
        raise CliError(f"the API sent a malformed {event.event!r} event")
    return data
