"""The Emulsion HTTP API, as the CLI uses it (httpx only; no server code is imported).

Every failure becomes one `CliError` line: the API unreachable, the token refused, or
the API's errors, RFC 9457 problems (`code`, `detail`, `errors`).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import quote

import httpx

from emulsion_cli.config import Config
from emulsion_cli.errors import ApiRequestError, CliError
from emulsion_cli.sse import Event, parse_stream

TIMEOUT: Final = httpx.Timeout(30.0, connect=5.0)
# An event stream is quiet between changes; the API sends a keep-alive every 15 s.
EVENTS_TIMEOUT: Final = httpx.Timeout(60.0, connect=5.0)
UPLOAD_TIMEOUT: Final = httpx.Timeout(300.0, connect=10.0)
# Retried: the apiserver throttling (429) or briefly away (503), and lost connections.
RETRYABLE_STATUS: Final = frozenset({429, 502, 503, 504})
ATTEMPTS: Final = 4
BACKOFF_SECONDS: Final = 0.5

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


def _error_from(response: httpx.Response) -> CliError:
    if response.status_code == 401:
        return ApiRequestError(
            401, "unauthorized", "the token was refused; check EMULSION_TOKEN (.emulsion/env)"
        )
    try:
        body = response.json()
        # An RFC 9457 problem: `code` is stable, `detail` for people, `errors` the parts.
        code, message = str(body["code"]), str(body["detail"])
        details = body.get("errors") or []
    except (ValueError, KeyError, TypeError):
        return ApiRequestError(response.status_code, "http_error", response.reason_phrase)
    if details:
        first = details[0]
        where = f"{first.get('field')}: " if first.get("field") else ""
        more = f" (and {len(details) - 1} more)" if len(details) > 1 else ""
        message = f"{message} — {where}{first.get('message')}{more}"
    return ApiRequestError(response.status_code, code, message)


def _asset_path(collection: str, asset: str) -> str:
    # Quoted, so a hostile name cannot turn into another path.
    return f"/v1/assets/{quote(collection, safe='')}/{quote(asset, safe='')}"


def _retryable(error: BaseException) -> bool:
    if isinstance(error, ApiRequestError):
        return error.status in RETRYABLE_STATUS
    return isinstance(error, httpx.TransportError)


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
        return CliError(f"cannot reach the Emulsion API at {self.config.api_url}: {error!r}")

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = await self._client.request(method, path, **kwargs)
        except httpx.TransportError as error:
            raise self._unreachable(error) from error
        if response.is_error:
            raise _error_from(response)
        return response

    async def _with_retries(self, call: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(ATTEMPTS):
            try:
                return await call()
            except CliError as error:
                cause = error.__cause__ or error
                if attempt == ATTEMPTS - 1 or not _retryable(cause):
                    raise
            await asyncio.sleep(BACKOFF_SECONDS * 2**attempt)
        raise AssertionError("unreachable")

    async def presign(self, files: list[tuple[str, str, int]]) -> list[Upload]:
        """One presigned POST per (filename, content type, size), in the order given."""
        body = {"files": [{"filename": n, "content_type": t, "size": s} for n, t, s in files]}
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
                raise CliError(f"upload of {path.name} failed: {error!r}") from error
        if response.is_error:
            # The object store answers in XML; its <Code> is the useful part.
            text = response.text
            code = text.split("<Code>", 1)[-1].split("</Code>", 1)[0] if "<Code>" in text else ""
            raise CliError(
                f"upload of {path.name} refused by the object store: "
                f"{response.status_code} {code or response.reason_phrase}"
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

    async def job(self, name: str, item_offset: int = 0, item_limit: int = 0) -> Json:
        params = {"item_offset": item_offset, "item_limit": item_limit}
        response = await self._with_retries(
            lambda: self._request("GET", f"/v1/ingests/{quote(name, safe='')}", params=params)
        )
        result: Json = response.json()
        return result

    async def job_items(self, name: str, page: int = 1000) -> list[Json]:
        """Every item of a job, page by page."""
        items: list[Json] = []
        while True:
            status = await self.job(name, item_offset=len(items), item_limit=page)
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
                    raise _error_from(response)
                async for event in parse_stream(response.aiter_lines()):
                    yield event
        except httpx.TransportError as error:
            raise self._unreachable(error) from error

    async def asset(self, collection: str, asset: str) -> Json:
        response = await self._request("GET", _asset_path(collection, asset))
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
        response = await self._request("DELETE", _asset_path(collection, asset))
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
