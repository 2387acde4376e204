"""Cursor paging (`ls`, `jobs`): every item once, in order, never past --limit, never a
loop, for any page sizes the client asks for and the server grants."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulsion_cli.api import Api
from emulsion_cli.config import Config
from emulsion_cli.errors import CliError
from emulsion_cli.paging import Page, every_item, parse_page


def fake_list(items: list[dict[str, Any]], granted: int) -> httpx.MockTransport:
    """A list endpoint that grants at most `granted` items a page (servers cap limits)."""
    requests: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        limit = min(int(request.url.params["limit"]), granted)
        start = int(request.url.params.get("cursor", "0"))
        page = items[start : start + limit]
        end = start + len(page)
        return httpx.Response(
            200, json={"items": page, "next_cursor": str(end) if end < len(items) else None}
        )

    transport = httpx.MockTransport(handle)
    transport.requests = requests  # type: ignore[attr-defined]
    return transport


async def list_all(
    transport: httpx.MockTransport, page_size: int, limit: int | None
) -> list[dict[str, Any]]:
    async with Api(Config("http://api.test", "t"), transport=transport) as api:
        return [
            item
            async for item in every_item(
                lambda cursor, n: api.assets_page("c", cursor, n, "live"), page_size, limit
            )
        ]


@settings(max_examples=60, deadline=None)
@given(
    total=st.integers(0, 60),
    page_size=st.integers(1, 25),
    granted=st.integers(1, 25),
    limit=st.none() | st.integers(1, 80),
)
def test_every_item_once_in_order_up_to_the_limit(
    total: int, page_size: int, granted: int, limit: int | None
) -> None:
    items = [{"asset": f"a{i}"} for i in range(total)]
    transport = fake_list(items, granted)

    listed = asyncio.run(list_all(transport, page_size, limit))

    assert listed == items[: total if limit is None else limit]
    requests: list[httpx.Request] = transport.requests  # type: ignore[attr-defined]
    for request in requests:
        assert int(request.url.params["limit"]) <= page_size
        assert request.url.params["state"] == "live"
        assert request.url.path == "/v1/assets/c"
    # Not one request more than needed: the last page, or the limit, ends the walk.
    per_page = min(page_size, granted)
    wanted = total if limit is None else min(limit, total)
    assert len(requests) == max(1, -(-wanted // per_page))


@given(st.lists(st.integers(0, 5), min_size=1, max_size=10))
def test_short_and_empty_pages_do_not_end_the_walk(sizes: list[int]) -> None:
    """Only a missing next_cursor ends it (a server may filter a page down to nothing)."""
    pages = []
    counter = 0
    for index, size in enumerate(sizes):
        last = index == len(sizes) - 1
        pages.append(Page([{"i": counter + j} for j in range(size)], None if last else f"p{index}"))
        counter += size

    async def fetch(cursor: str | None, n: int) -> Page:
        return pages[0 if cursor is None else int(cursor[1:]) + 1]

    async def walk() -> list[dict[str, Any]]:
        return [item async for item in every_item(fetch, 5)]

    assert asyncio.run(walk()) == [{"i": i} for i in range(counter)]


def test_a_repeated_cursor_is_an_error_not_a_loop() -> None:
    async def fetch(cursor: str | None, n: int) -> Page:
        return Page([{"i": 1}], "same")

    async def walk() -> list[dict[str, Any]]:
        return [item async for item in every_item(fetch, 5)]

    with pytest.raises(CliError, match="cursor 'same' twice"):
        asyncio.run(walk())


@pytest.mark.parametrize(
    "document",
    [[], {"items": {}}, {"items": [1]}, {"items": [], "next_cursor": 3}, {"next_cursor": None}],
)
def test_a_body_that_is_not_a_page(document: object) -> None:
    with pytest.raises(CliError, match="list of things"):
        parse_page(document, "list of things")
