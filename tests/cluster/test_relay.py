"""The relay that lets pods reach the stack's loopback servers: it copies bytes both ways
and never listens on all interfaces."""

from __future__ import annotations

import asyncio
import socket

import pytest

from emulsion_devstack.processes import free_port
from emulsion_devstack.relay import Route, serve


@pytest.mark.parametrize("listen", ["0.0.0.0", "::", ""])  # noqa: S104 - refused
def test_the_relay_refuses_to_listen_on_all_interfaces(listen: str) -> None:
    with pytest.raises(ValueError, match=r"all interfaces|expected"):
        Route.parse(f"{listen}:8080=127.0.0.1:8080")


def test_a_route_reads_back_as_written() -> None:
    assert str(Route.parse("10.244.0.1:4222=127.0.0.1:4222")) == "10.244.0.1:4222=127.0.0.1:4222"


def test_bytes_cross_the_relay_both_ways() -> None:
    async def scenario() -> bytes:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write((await reader.read(1 << 20)).upper())
            await writer.drain()
            writer.close()

        target = await asyncio.start_server(echo, "127.0.0.1", 0)
        target_port = target.sockets[0].getsockname()[1]
        # 127.0.0.2 stands for the bridge address: another address, same loopback.
        listen_port = free_port()
        relay = asyncio.create_task(
            serve([Route("127.0.0.2", listen_port, "127.0.0.1", target_port)])
        )
        try:
            for _ in range(200):
                try:
                    reader, writer = await asyncio.open_connection("127.0.0.2", listen_port)
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            writer.write(b"hello node")
            writer.write_eof()
            answer = await asyncio.wait_for(reader.read(), timeout=10)
            writer.close()
            return answer
        finally:
            relay.cancel()
            target.close()

    assert asyncio.run(scenario()) == b"HELLO NODE"


def test_nothing_listens_on_all_interfaces_for_the_relay() -> None:
    # The relay binds exactly the address it is given.
    port = free_port()
    route = Route.parse(f"127.0.0.3:{port}=127.0.0.1:1")

    async def bound() -> str:
        task = asyncio.create_task(serve([route]))
        for _ in range(200):
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.3", port)) == 0:
                    break
            await asyncio.sleep(0.05)
        with socket.socket() as probe:
            refused = probe.connect_ex(("127.0.0.1", port))
        task.cancel()
        return "refused" if refused != 0 else "open"

    assert asyncio.run(bound()) == "refused"
