"""`up` twice is harmless, `down` leaves no process behind, a failed start says why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from emulsion_devstack import processes
from emulsion_devstack import stack as stack_module
from emulsion_devstack.processes import ProcessRecord, StackError
from emulsion_devstack.stack import LocalStack


def test_up_twice_then_down_leaves_nothing(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path / "state", say=lambda line: None)
    try:
        first = stack.up()
        records = stack.processes()
        assert {r.name for r in records} == {"etcd", "kube-apiserver", "nats-server", "minio"}
        assert all(r.alive() for r in records)

        again = stack.up()
        assert again == first
        assert stack.processes() == records
        env = (tmp_path / "state" / "env").read_text()
        for variable in (
            "KUBECONFIG",
            "NATS_URL",
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "EMULSION_BUCKET",
        ):
            assert f"export {variable}=" in env
    finally:
        stopped = stack.down()
    assert sorted(stopped) == sorted(r.name for r in records)
    assert not any(r.alive() for r in records)
    assert not Path(first.data_dir).exists()
    assert not (tmp_path / "state" / "env").exists()
    assert stack.down() == []


def test_a_component_that_cannot_start_is_reported_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "minio"
    broken.write_text("#!/bin/sh\necho 'minio: cannot open the drive: permission denied'\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("EMULSION_MINIO_BIN", str(broken))
    spawned: list[ProcessRecord] = []

    def recording_spawn(*args: Any, **kwargs: Any) -> ProcessRecord:
        record = processes.spawn(*args, **kwargs)
        spawned.append(record)
        return record

    monkeypatch.setattr(stack_module, "spawn", recording_spawn)
    stack = LocalStack(tmp_path / "state", say=lambda line: None)
    with pytest.raises(StackError, match="cannot open the drive") as failure:
        stack.up()
    assert str(failure.value).startswith("minio exited before it was ready")
    assert [r.name for r in spawned] == ["etcd", "kube-apiserver", "nats-server", "minio"]
    assert not any(r.alive() for r in spawned)
    assert stack.processes() == []
