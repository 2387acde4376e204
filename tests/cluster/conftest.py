"""The real node for tests/cluster: a stack of its own, the node on it (node.py), the
locally built images loaded (images.py) and the chart installed (release.py): the same
code as `make cluster`, `make images` and `make cluster-install`.

Tearing it down compares the host with what it was before the node: kernel parameters,
links, iptables rules, mounts, cgroups and the runtime's paths must all be as they were.
"""

from __future__ import annotations

import contextlib
import re
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
    api_url: str
    kube: Any

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
        with _port_forward(endpoints, namespace) as api_url:
            yield Cluster(
                stack=stack,
                endpoints=endpoints,
                namespace=namespace,
                api_url=api_url,
                kube=config.new_client_from_config(config_file=endpoints.kubeconfig),
            )
    finally:
        stack.down()
    after = host_snapshot()
    changed = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
    assert not changed, f"the node left the host changed: {changed}"


@contextlib.contextmanager
def _port_forward(endpoints: Endpoints, namespace: str) -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            str(ensure_binary("kubectl")),
            "--kubeconfig",
            endpoints.kubeconfig,
            "--namespace",
            namespace,
            "port-forward",
            "--address",
            "127.0.0.1",
            f"svc/{release.RELEASE}-api",
            f"{port}:80",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert re.match(r"Forwarding from 127\.0\.0\.1:\d+", line), line
        wait_for("the API through port-forward", lambda: _healthy(url), timeout=30)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def _healthy(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
    return False
