"""NATS_URL takes a cluster's servers: nats-py read
"nats://a:4222,nats://b:4222" as one URL and failed with "invalid connect url option",
so a service given a cluster's addresses could not start. Each is now one server, and a
service starts while any server of the list answers."""

from __future__ import annotations

import socket
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from emulsion_contracts import natsauth
from emulsion_devstack.stack import Endpoints
from emulsion_runtime import messaging
from emulsion_runtime.settings import NatsSettings

HOST = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,20}){0,2}", fullmatch=True)
SERVER = st.builds(
    "{}://{}:{}".format, st.sampled_from(["nats", "tls"]), HOST, st.integers(1, 65535)
)


@given(servers=st.lists(SERVER, min_size=1, max_size=5), spaces=st.sampled_from(["", " ", "  "]))
def test_every_listed_server_is_one_entry_in_order(servers: list[str], spaces: str) -> None:
    settings = NatsSettings(nats_url=f",{spaces}".join(servers))
    assert settings.servers() == servers
    assert messaging.connect_options(settings)["servers"] == servers


@pytest.mark.parametrize("url", ["", " , ", "http://nats:4222", "nats://:4222,nats://b:1"])
def test_a_list_without_a_usable_server_is_refused_at_start(url: str) -> None:
    with pytest.raises(ValidationError, match="NATS_URL"):
        NatsSettings(nats_url=url)


def closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_a_service_connects_while_one_server_of_its_list_answers(
    stack: Endpoints, run: Any
) -> None:
    scheme = stack.nats_url.split("://", 1)[0]
    dead = f"{scheme}://127.0.0.1:{closed_port()}"
    fields = stack.nats_fields(natsauth.API_IDENTITY)
    settings = NatsSettings(**{**fields, "nats_url": f"{dead}, {stack.nats_url}"})

    async def connect() -> str | None:
        import nats

        connection = await nats.connect(
            **messaging.connect_options(settings), connect_timeout=2, max_reconnect_attempts=2
        )
        try:
            return connection.connected_url.netloc if connection.connected_url else None
        finally:
            await connection.close()

    assert run(connect()) == stack.nats_url.split("://", 1)[1]
