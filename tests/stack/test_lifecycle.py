"""`up` twice is harmless, `down` leaves no process behind, a failed start says why."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from emulsion_devstack import processes
from emulsion_devstack import stack as stack_module
from emulsion_devstack.processes import ProcessRecord, StackError
from emulsion_devstack.stack import LocalStack

# Far under the 10 s and more of kube-apiserver waiting on an etcd stopped with it, far
# over the second or two each takes when stopped in order, even on a loaded machine.
DOWN_WITHIN = 6.0


def devstack(command: str, state_dir: Path) -> str:
    """The command line behind `make up`/`make down`, without Emulsion's services."""
    return subprocess.run(
        [sys.executable, "-m", "emulsion_devstack", command, "--state-dir", str(state_dir)]
        + (["--services", ""] if command == "up" else []),
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def test_up_twice_then_down_leaves_nothing(tmp_path: Path) -> None:
    stack = LocalStack(tmp_path / "state", say=lambda line: None)
    try:
        assert "kubectl get ingestjobs" in devstack("up", tmp_path / "state")
        first = stack.running()
        assert first is not None
        records = stack.processes()
        assert {r.name for r in records} == {"etcd", "kube-apiserver", "nats-server", "minio"}
        assert all(r.alive() for r in records)

        # What a user does next, in a shell whose PATH knows nothing of the venv.
        shell = subprocess.run(
            ["bash", "-c", f"source {tmp_path / 'state' / 'env'} && kubectl get ij"],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
            timeout=60,
        )
        assert shell.returncode == 0, shell.stderr
        assert "No resources found" in shell.stderr

        assert "already running" in devstack("up", tmp_path / "state")
        assert stack.running() == first
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
        began = time.monotonic()
        stopped = devstack("down", tmp_path / "state")
        stopping = time.monotonic() - began
    assert stopped.startswith("stopped ")
    # Each server stops in about a second once what depends on it has gone; stopped all
    # at once, kube-apiserver retries a vanished etcd for 10 s and more.
    assert stopping < DOWN_WITHIN, f"down took {stopping:.1f} s"
    assert sorted(stopped.removeprefix("stopped ").strip().split(", ")) == sorted(
        r.name for r in records
    )
    assert not any(r.alive() for r in records)
    assert not Path(first.data_dir).exists()
    assert not (tmp_path / "state" / "env").exists()
    assert devstack("down", tmp_path / "state").strip() == "nothing was running"


def test_a_component_that_cannot_start_is_reported_with_its_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "minio"
    broken.write_text("#!/bin/sh\necho 'minio: cannot open the drive: permission denied'\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("EMULSION_MINIO_BIN", str(broken))
    started: list[str] = []
    spawned: list[ProcessRecord] = []

    def recording_spawn(name: str, *args: Any, **kwargs: Any) -> ProcessRecord:
        started.append(name)
        record = processes.spawn(name, *args, **kwargs)
        spawned.append(record)
        return record

    monkeypatch.setattr(stack_module, "spawn", recording_spawn)
    stack = LocalStack(tmp_path / "state", say=lambda line: None)
    with pytest.raises(StackError, match="cannot open the drive") as failure:
        stack.up()
    # Whether it dies within spawn() or while awaited depends on load; both name it.
    assert str(failure.value).startswith("minio exited ")
    assert started == ["etcd", "kube-apiserver", "nats-server", "minio"]
    assert not any(r.alive() for r in spawned)
    assert stack.processes() == []
