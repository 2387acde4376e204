"""kubectl against the stack's apiserver, for what the real node creates through the API
(its add-ons' objects) and deletes again."""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from collections.abc import Sequence
from typing import Any

import yaml

from emulsion_devstack.binaries import ensure_binary
from emulsion_devstack.processes import StackError


def kubectl(
    kubeconfig: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [str(ensure_binary("kubectl")), "--kubeconfig", kubeconfig, *args]
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
    return result


def apply(kubeconfig: str, manifests: Sequence[dict[str, Any]]) -> None:
    documents = yaml.safe_dump_all(list(manifests))
    kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=documents)


def wait_namespace_usable(kubeconfig: str, name: str, timeout: float = 120.0) -> None:
    """A namespace a previous node deleted (`down` stops the controller-manager first)
    stays Terminating until this node's namespace controller empties it; nothing can be
    created in it until then."""
    deadline = time.monotonic() + timeout
    while True:
        found = kubectl(
            kubeconfig, "get", "namespace", name, "--ignore-not-found", "-o", "json"
        ).stdout.strip()
        if not found or json.loads(found).get("status", {}).get("phase") != "Terminating":
            return
        if time.monotonic() > deadline:
            raise StackError(f"namespace {name} still Terminating after {timeout:.0f}s")
        time.sleep(1)


def delete(kubeconfig: str, objects: Sequence[tuple[str, str]]) -> None:
    """Delete each (namespace or "", kind/name), not waiting; what is gone already or
    fails is left."""
    for namespace, name in objects:
        scope = ["--namespace", namespace] if namespace else []
        with contextlib.suppress(StackError):
            kubectl(kubeconfig, "delete", *scope, name, "--ignore-not-found", "--wait=false")
