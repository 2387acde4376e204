"""Server-sent events: the parsing rules of the HTML standard, fed one line at a time."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    event: str
    data: str
    id: str | None = None


class EventParser:
    """Accumulates `field: value` lines; a blank line dispatches the event.

    Comments (lines starting with ':', the API's keep-alives) and unknown fields are
    ignored; an event with no data lines is not dispatched, as the standard says.
    """

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> Event | None:
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "event":
            self._event = value
        elif name == "data":
            self._data.append(value)
        elif name == "id" and "\0" not in value:
            self._id = value
        return None

    def _dispatch(self) -> Event | None:
        event = (
            Event(self._event or "message", "\n".join(self._data), self._id) if self._data else None
        )
        self._event, self._data = "", []
        return event


def parse_lines(lines: Iterable[str]) -> Iterator[Event]:
    parser = EventParser()
    for line in lines:
        if (event := parser.feed(line)) is not None:
            yield event


async def parse_stream(lines: AsyncIterator[str]) -> AsyncIterator[Event]:
    parser = EventParser()
    async for line in lines:
        if (event := parser.feed(line)) is not None:
            yield event
