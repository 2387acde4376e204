"""The real node for tests/cluster: a stack of its own, the node on it (node.py), the
locally built images loaded (images.py) and the chart installed (release.py): the same
code as `make cluster`, `make images` and `make cluster-install`.

Tearing it down compares the host with what it was before the node: kernel parameters,
links, iptables rules, mounts, cgroups and the runtime's paths must all be as they were.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulsion_devstack import images, release
from emulsion_devstack.binaries import ensure_binary
from emulsion_devstack.node import Node, host_snapshot
from emulsion_devstack.processes import free_port, wait_for
from emulsion_devstack.stack import Endpoints, LocalStack


@dataclass(frozen=True)
class Cluster:
    stack: LocalStack
    endpoints: Endpoints
    namespace: str
    # The API's Service, reached through `kubectl port-forward` on 127.0.0.1.
    forward: ApiForward
    kube: Any

    @property
    def api_url(self) -> str:
        return self.forward.url()

    def client_environment(self) -> dict[str, str]:
        return {**self.stack.client_environment(), "EMULSION_API_URL": self.api_url}

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ensure_binary("kubectl")), "--kubeconfig", self.endpoints.kubeconfig, *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=check,
        )


@pytest.fixture(scope="package")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from kubernetes import config

    before = host_snapshot()
    state_dir = tmp_path_factory.mktemp("cluster")
    stack = LocalStack(state_dir, say=lambda line: None)
    try:
        endpoints = stack.up()
        node = Node(stack, say=lambda line: None).up()
        built = images.build(say=lambda line: None)
        (state_dir / "images").write_text(f"{built.registry}\n{built.tag}\n")
        images.load(built, Path(node.containerd_socket), say=lambda line: None)
        namespace = release.install(stack, say=lambda line: None)
        with _port_forward(endpoints, namespace) as forward:
            yield Cluster(
                stack=stack,
                endpoints=endpoints,
                namespace=namespace,
                forward=forward,
                kube=config.new_client_from_config(config_file=endpoints.kubeconfig),
            )
    finally:
        # `down` removes the node's directory; its logs stay next to the state dir for a
        # post-mortem (pytest keeps the last three runs' tmp dirs).
        with contextlib.suppress(OSError):
            shutil.copytree(state_dir / "node" / "logs", state_dir.parent / "cluster-node-logs")
        stack.down()
    after = host_snapshot()
    changed = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
    assert not changed, f"the node left the host changed: {changed}"


class ApiForward:
    """`kubectl port-forward svc/...` binds one pod: when a rollout or a test replaces
    the API's pod, kubectl exits, and the next use starts it again on the same port."""

    def __init__(self, endpoints: Endpoints, namespace: str) -> None:
        self.endpoints = endpoints
        self.namespace = namespace
        self.port = free_port()
        self.process: subprocess.Popen[str] | None = None

    def url(self) -> str:
        address = f"http://127.0.0.1:{self.port}"
        if self.process is not None and self.process.poll() is None and _healthy(address):
            return address
        self.close()
        self.process = subprocess.Popen(
            [
                str(ensure_binary("kubectl")),
                "--kubeconfig",
                self.endpoints.kubeconfig,
                "--namespace",
                self.namespace,
                "port-forward",
                "--address",
                "127.0.0.1",
                f"svc/{release.RELEASE}-api",
                f"{self.port}:80",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        assert re.match(r"Forwarding from 127\.0\.0\.1:\d+", line), line
        wait_for("the API through port-forward", lambda: _healthy(address), timeout=30)
        return address

    def close(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None


@contextlib.contextmanager
def _port_forward(endpoints: Endpoints, namespace: str) -> Iterator[ApiForward]:
    forward = ApiForward(endpoints, namespace)
    try:
        forward.url()
        yield forward
    finally:
        forward.close()


def _healthy(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    return False
