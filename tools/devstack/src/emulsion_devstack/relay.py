"""A TCP relay from the node's bridge address to the stack's loopback servers.

The stack's servers (kube-apiserver, NATS, MinIO) listen on 127.0.0.1 only, which a
pod cannot reach from its own network namespace. The node (node.py) runs one relay
process that listens on the bridge's host address (never on all interfaces) and
copies bytes both ways to the loopback server on the same port, so pods reach
`<bridge address>:<port>` and the servers need no restart.

CLI: ``python -m emulsion_devstack.relay LISTEN_HOST:PORT=TARGET_HOST:PORT ...``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass

CHUNK = 256 * 1024


@dataclass(frozen=True)
class Route:
    listen_host: str
    listen_port: int
    target_host: str
    target_port: int

    @classmethod
    def parse(cls, text: str) -> Route:
        listen, _, target = text.partition("=")
        listen_host, _, listen_port = listen.rpartition(":")
        target_host, _, target_port = target.rpartition(":")
        if not (listen_host and listen_port and target_host and target_port):
            raise ValueError(f"expected LISTEN_HOST:PORT=TARGET_HOST:PORT, got {text!r}")
        if listen_host in ("0.0.0.0", "::", ""):  # noqa: S104 - the check forbids it
            raise ValueError("the relay never listens on all interfaces")
        return cls(listen_host, int(listen_port), target_host, int(target_port))

    def __str__(self) -> str:
        return f"{self.listen_host}:{self.listen_port}={self.target_host}:{self.target_port}"


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        pass


async def _relay(
    route: Route, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
) -> None:
    try:
        server_reader, server_writer = await asyncio.open_connection(
            route.target_host, route.target_port
        )
    except OSError:
        client_writer.close()
        return
    try:
        await asyncio.gather(
            _pipe(client_reader, server_writer), _pipe(server_reader, client_writer)
        )
    finally:
        for writer in (client_writer, server_writer):
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()


async def serve(routes: Sequence[Route]) -> None:
    servers = []
    for route in routes:

        async def handle(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, route: Route = route
        ) -> None:
            await _relay(route, reader, writer)

        servers.append(
            await asyncio.start_server(handle, route.listen_host, route.listen_port, backlog=512)
        )
        print(f"relaying {route}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulsion_devstack.relay", description=__doc__)
    parser.add_argument("routes", nargs="+", type=Route.parse, metavar="LISTEN=TARGET")
    args = parser.parse_args(argv)
    asyncio.run(serve(args.routes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
