"""Server-sent events parsing, as the HTML standard defines it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from emulsion_cli.sse import Event, parse_lines, parse_stream


def test_events_comments_and_ids() -> None:
    lines = [
        ": keep-alive",
        "",
        "id: 41",
        "event: status",
        'data: {"succeeded": 1}',
        "",
        "event: end",
        "data: {}",
        "",
    ]
    assert list(parse_lines(lines)) == [
        Event("status", '{"succeeded": 1}', "41"),
        Event("end", "{}", "41"),
    ]


def test_multi_line_data_crlf_and_default_type() -> None:
    lines = ["data: first\r\n", "data:second\r\n", "\r\n"]
    assert list(parse_lines(lines)) == [Event("message", "first\nsecond", None)]


def test_an_event_without_data_is_not_dispatched_and_type_resets() -> None:
    lines = ["event: status", "", "data: x", "", "unknown: field", "data", ""]
    assert list(parse_lines(lines)) == [Event("message", "x"), Event("message", "")]


def test_an_unfinished_event_at_the_end_is_dropped() -> None:
    assert list(parse_lines(["event: end", "data: {}"])) == []


def test_async_stream() -> None:
    async def lines() -> AsyncIterator[str]:
        for line in ("event: end", "data: {}", ""):
            yield line

    async def collect() -> list[Event]:
        return [event async for event in parse_stream(lines())]

    assert asyncio.run(collect()) == [Event("end", "{}")]
