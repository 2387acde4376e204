"""A TCP proxy between one service and one server, that can hold traffic at a chosen frame.

The fault cases must kill a process at an exact point of its work (between an upload and
the manifest commit, between a commit and the ack, ...). Timing that from outside is a
race; a hook in the services would be code in production that only tests use. Instead,
each service under test reaches NATS, S3 and the apiserver through one of these proxies,
and a case arms a `Hold`: the bytes of the first frame matching a pattern (say the
`PUT` of a manifest, or a `+ACK`) and everything after them on that connection stay in
the proxy. The service is then provably stopped at that point, and the case kills it.
The held bytes are dropped with the connection, as a dying pod's socket drops them.

NATS and S3 (plain HTTP here) are read as they are; the apiserver's TLS is opaque, so
for it a case holds all client bytes at once (`hold_all`).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

Direction = Literal["up", "down"]  # up: client -> server; down: server -> client
CARRY = 512  # bytes kept from the previous chunk, so a frame split across reads still matches


@dataclass
class Hold:
    """Hold a connection's traffic from the `skip + 1`-th match of `pattern` on.

    `pattern` is searched in the client's bytes. With `then="up"` the client's bytes from
    the match on are held (the request never reaches the server); with `then="down"` the
    request goes through and the server's answer is held after `pass_bytes` of it.
    `release_after` lets the held bytes go after that many seconds (a stall, not a cut).
    """

    pattern: bytes
    skip: int = 0
    then: Direction = "up"
    pass_bytes: int = 0
    release_after: float | None = None
    matches: int = 0
    triggered: threading.Event = field(default_factory=threading.Event)
    released: threading.Event = field(default_factory=threading.Event)
    seen: list[bytes] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.regex = re.compile(self.pattern)

    def wait(self, timeout: float) -> None:
        if not self.triggered.wait(timeout):
            raise AssertionError(
                f"the hold on {self.pattern!r} never triggered within {timeout:.0f}s "
                f"({self.matches} matches seen)"
            )


class _Direction:
    """One direction of one connection: forwards bytes, or keeps them once held."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.held = bytearray()
        self.holding = False
        self.budget: int | None = None  # bytes still to pass before holding (then="down")

    async def send(self, data: bytes) -> None:
        if self.budget is not None:
            passing, data = data[: self.budget], data[self.budget :]
            self.budget -= len(passing)
            await self._write(passing)
            if self.budget <= 0:
                self.budget, self.holding = None, True
        if self.holding:
            self.held += data
            return
        await self._write(data)

    async def release(self) -> None:
        self.holding, self.budget = False, None
        data, self.held = bytes(self.held), bytearray()
        await self._write(data)

    async def _write(self, data: bytes) -> None:
        if data:
            self.writer.write(data)
            await self.writer.drain()


class Proxy:
    """Listens on 127.0.0.1:<port> and forwards each connection to `upstream`."""

    def __init__(self, upstream_host: str, upstream_port: int, name: str = "proxy") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.name = name
        self.holds: list[Hold] = []
        self.hold_everything = False
        self.requests: list[tuple[float, bytes]] = []  # first line of each matching client frame
        self.log_pattern: re.Pattern[bytes] | None = None
        self.held_bytes = 0
        self._loop = asyncio.new_event_loop()
        self._connections: set[tuple[_Direction, _Direction]] = set()
        self._lock = threading.Lock()
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True, name=name)
        self._thread.start()
        ready.wait(10)
        self.port: int = self._port

    # -- controls (called from the test's thread) -------------------------------------

    def arm(self, hold: Hold) -> Hold:
        with self._lock:
            self.holds.append(hold)
        return hold

    def disarm(self) -> None:
        """Forget every hold and let everything held go on (connections that still exist)."""
        with self._lock:
            self.holds.clear()
            self.hold_everything = False
        asyncio.run_coroutine_threadsafe(self._release_all(), self._loop).result(10)

    def hold_all(self) -> None:
        """From now on, keep every byte any client sends (TLS included)."""
        with self._lock:
            self.hold_everything = True
        for up, _ in list(self._connections):
            up.holding = True

    def log_requests(self, pattern: bytes) -> None:
        """Record (time, line) of client frames whose line matches `pattern`."""
        self.log_pattern = re.compile(pattern + rb"[^\r\n]*")

    def logged(self, since: float = 0.0) -> list[bytes]:
        return [line for moment, line in list(self.requests) if moment >= since]

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    # -- the event loop's side ---------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, reuse_address=True)
        )
        self._port = int(server.sockets[0].getsockname()[1])
        ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            for up, down in list(self._connections):
                up.writer.close()
                down.writer.close()
            with contextlib.suppress(Exception):
                self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_w.close()  # the server is down: the client sees its connection fail
            return
        up, down = _Direction(server_w), _Direction(client_w)
        up.holding = self.hold_everything
        pair = (up, down)
        self._connections.add(pair)
        try:
            await asyncio.gather(
                self._pump_up(client_r, up, down),
                self._pump(server_r, down),
                return_exceptions=True,
            )
        finally:
            self._connections.discard(pair)
            for writer in (client_w, server_w):
                with contextlib.suppress(Exception):
                    writer.close()

    async def _pump(self, reader: asyncio.StreamReader, direction: _Direction) -> None:
        try:
            while data := await reader.read(65536):
                await direction.send(data)
                if direction.holding:
                    self.held_bytes += len(data)
        finally:
            with contextlib.suppress(Exception):
                direction.writer.close()  # one side gone: so is the other (no half-open)

    async def _pump_up(
        self, reader: asyncio.StreamReader, up: _Direction, down: _Direction
    ) -> None:
        carry = b""
        try:
            while data := await reader.read(65536):
                window = carry + data
                cut = self._inspect(window, len(carry), up, down)
                if cut is not None and not up.holding:
                    await up.send(data[:cut])
                    up.holding = True
                    await up.send(data[cut:])
                else:
                    await up.send(data)
                if up.holding:
                    self.held_bytes += len(data)
                carry = window[-CARRY:]
        finally:
            with contextlib.suppress(Exception):
                up.writer.close()

    def _inspect(
        self, window: bytes, fresh_from: int, up: _Direction, down: _Direction
    ) -> int | None:
        """Log and match the new part of `window`; the offset in the new data to hold from."""
        now = time.monotonic()
        if self.log_pattern is not None:
            for found in self.log_pattern.finditer(window):
                if found.end() > fresh_from:
                    self.requests.append((now, found.group(0)))
        with self._lock:
            holds = [h for h in self.holds if not h.triggered.is_set()]
        for hold in holds:
            for found in hold.regex.finditer(window):
                if found.end() <= fresh_from:
                    continue  # matched (and counted) in the previous chunk already
                hold.matches += 1
                hold.seen.append(window[found.start() : found.start() + 200])
                if hold.matches <= hold.skip:
                    continue
                hold.triggered.set()
                if hold.release_after is not None:
                    self._loop.call_later(hold.release_after, self._release_soon, up, down, hold)
                if hold.then == "down":
                    down.budget = hold.pass_bytes
                    return None
                return max(0, found.start() - fresh_from)
        return None

    def _release_soon(self, up: _Direction, down: _Direction, hold: Hold) -> None:
        async def release() -> None:
            with contextlib.suppress(Exception):
                await up.release()
                await down.release()
            hold.released.set()

        self._loop.create_task(release())

    async def _release_all(self) -> None:
        for up, down in list(self._connections):
            with contextlib.suppress(Exception):
                await up.release()
                await down.release()

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def url_through(proxy: Proxy, scheme: str) -> str:
    return f"{scheme}://127.0.0.1:{proxy.port}"
