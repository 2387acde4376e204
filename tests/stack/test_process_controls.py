"""One process at a time: `kill`, `stop`, `start`, `restart` keep ports, data and settings."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from emulsion_devstack.processes import StackError
from emulsion_devstack.stack import LocalStack, s3_client


def test_a_killed_or_stopped_server_comes_back_on_its_port_with_its_data(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path / "state", say=lambda line: None)
    try:
        endpoints = stack.up()
        s3 = s3_client(endpoints)
        s3.put_object(Bucket=endpoints.bucket, Key="kept", Body=b"data")
        before = stack.record("minio")

        stack.kill("minio", signal.SIGKILL)
        assert not before.alive()
        assert stack.running() is None  # a server is down: the stack as such is not running
        again = stack.start("minio")
        assert again.pid != before.pid and again.argv == before.argv
        assert s3.get_object(Bucket=endpoints.bucket, Key="kept")["Body"].read() == b"data"

        # NATS restarted keeps its JetStream file store: streams survive.
        stack.restart("nats-server")

        async def streams() -> list[str]:
            connection = await endpoints.nats_connect(connect_timeout=5)
            try:
                return [str(s.config.name) for s in await connection.jetstream().streams_info()]
            finally:
                await connection.close()

        assert "EMULSION_WORK" in asyncio.run(streams())

        stack.kill("etcd", signal.SIGSTOP)  # frozen, not gone
        assert stack.record("etcd").alive()
        stack.kill("etcd", signal.SIGCONT)
        assert stack.running() == endpoints
        assert stack.start("etcd") == stack.record("etcd")  # alive: left as it is
        with pytest.raises(StackError, match="no process named"):
            stack.record("nothing")
    finally:
        stack.down()
    assert not any(r.alive() for r in stack.processes())
