"""`make cluster-install`: charts/emulsion installed (or upgraded) on the real node.

The release uses the images `make images` built (their tag is in `<state_dir>/images`)
and points at the stack's NATS and MinIO through the node's relay on the bridge
address. The API's tokens are the stack's EMULSION_TOKEN, so `.emulsion/env` works
against the pods as it does against `make up`'s processes.

CLI: ``python -m emulsion_devstack.release install [--state-dir DIR]``
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from emulsion_contracts import natsauth
from emulsion_devstack.binaries import ensure_binary
from emulsion_devstack.endpoints import Endpoints
from emulsion_devstack.node import Node, NodeInfo
from emulsion_devstack.processes import StackError, command_failed
from emulsion_devstack.stack import LocalStack, add_state_dir

REPO_ROOT = Path(__file__).resolve().parents[4]
CHART = REPO_ROOT / "charts" / "emulsion"
RELEASE = "emulsion"
NAMESPACE = "emulsion"
NATS_SECRET = f"{RELEASE}-nats"
NATS_CA_SECRET = f"{RELEASE}-nats-ca"
# The processors' ceiling on the node (release_values).
MAX_PROCESSORS = 4
Say = Callable[[str], None]


def release_values(endpoints: Endpoints, node: NodeInfo, registry: str, tag: str) -> dict[str, Any]:
    """The chart's values for the node: local images, the stack's servers, and requests
    small enough that every replica fits two cores."""
    s3_port = int(node.s3.rsplit(":", 1)[1])
    nats_port = int(node.nats.rsplit(":", 1)[1])
    api_port = int(node.apiserver.rsplit(":", 1)[1])
    small = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}}
    return {
        "image": {"registry": registry, "tag": tag, "pullPolicy": "Never"},
        # The stack applied the CRDs already (they are not the release's to own).
        "crds": {"enabled": False},
        "nats": nats_values(endpoints, node.nats, nats_port),
        "s3": {
            "bucket": endpoints.bucket,
            "endpointUrl": f"http://{node.s3}",
            "ports": [s3_port],
            "credentials": {"existingSecret": f"{RELEASE}-s3"},
        },
        # The chart's autoscaler: KEDA (make cluster runs its operator and adapter) on
        # the lag of the processors' consumer, read through the relay like NATS itself.
        "keda": {
            "enabled": True,
            "natsMonitoringEndpoint": node.nats_monitor,
            "pollingInterval": 5,
        },
        "networkPolicy": {"kubeApiserverPorts": [443, api_port]},
        # The stack's token, scoped explicitly: the chart refuses an install where every
        # token would be an admin by omission.
        "apiTokens": {"scopes": {hashlib.sha256(endpoints.api_token.encode()).hexdigest(): ["*"]}},
        "components": {
            "api": {"replicas": 1, "resources": small},
            "controller": {"resources": small},
            "processor": {
                "replicas": 1,
                "resources": {
                    "requests": {"cpu": "100m", "memory": "256Mi"},
                    "limits": {"memory": "2Gi"},
                },
                # MAX_PROCESSORS x the requests fits the node's two cores next to the
                # other pods and a rollout's surge; a minute (not five) after the
                # backlog drains they are back at one.
                "autoscaling": {
                    "minReplicas": 1,
                    "maxReplicas": MAX_PROCESSORS,
                    "scaleDownStabilizationSeconds": 60,
                },
            },
            "janitor": {"resources": small},
        },
    }


def nats_values(endpoints: Endpoints, address: str, port: int) -> dict[str, Any]:
    """The stack's NATS through the relay: each component as its own identity (the
    passwords the stack made, in the Secret NATS_SECRET), over TLS verified against the
    stack's NATS CA (NATS_CA_SECRET; the server's certificate names the bridge address).
    The stack's server has the users already (from the same table): no snippet."""
    tls = bool(endpoints.nats_ca_file)
    values: dict[str, Any] = {
        "url": f"{'tls' if tls else 'nats'}://{address}",
        "port": port,
        "auth": {"enabled": True, "existingSecret": NATS_SECRET, "serverSnippet": False},
    }
    if tls:
        values["tls"] = {"caSecret": NATS_CA_SECRET, "caKey": "ca.crt"}
    return values


def nats_secrets(endpoints: Endpoints) -> dict[str, dict[str, str]]:
    """The Secrets `nats_values` names: each identity's password, and the CA."""
    directory = Path(endpoints.nats_auth_dir)
    secrets = {
        NATS_SECRET: {
            identity: (directory / f"{identity}.password").read_text().strip()
            for identity in natsauth.IDENTITIES
        }
    }
    if endpoints.nats_ca_file:
        secrets[NATS_CA_SECRET] = {"ca.crt": Path(endpoints.nats_ca_file).read_text()}
    return secrets


def install(
    stack: LocalStack,
    *,
    overrides: Mapping[str, Any] | None = None,
    timeout: str = "6m",
    say: Say = print,
) -> str:
    """helm upgrade --install the chart; returns the release's namespace."""
    endpoints = stack.running()
    if endpoints is None:
        raise StackError("the stack is not running: make cluster first")
    node = Node(stack).running()
    if node is None:
        raise StackError("no node is running: make cluster first")
    try:
        registry, tag = (stack.state_dir / "images").read_text().split()
    except FileNotFoundError:
        raise StackError("no images were built: make images first") from None
    _ensure_secrets(endpoints)
    values = _merge(release_values(endpoints, node, registry, tag), dict(overrides or {}))
    helm = ensure_binary("helm")
    started = time.monotonic()
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        yaml.safe_dump(values, file)
        file.flush()
        result = subprocess.run(
            [
                str(helm),
                "upgrade",
                "--install",
                RELEASE,
                str(CHART),
                "--namespace",
                NAMESPACE,
                "--create-namespace",
                "--values",
                file.name,
                "--wait",
                "--timeout",
                timeout,
                "--kubeconfig",
                endpoints.kubeconfig,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    if result.returncode != 0:
        raise StackError(f"helm upgrade --install failed:\n{result.stdout}\n{result.stderr}")
    say(f"release {RELEASE} in namespace {NAMESPACE} ready in {time.monotonic() - started:.0f}s")
    return NAMESPACE


def _ensure_secrets(endpoints: Endpoints) -> None:
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api = client.CoreV1Api(config.new_client_from_config(config_file=endpoints.kubeconfig))
    try:
        api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=NAMESPACE)))
    except ApiException as error:
        if error.status != 409:
            raise
    secrets = {
        f"{RELEASE}-s3": {
            "AWS_ACCESS_KEY_ID": endpoints.s3_access_key,
            "AWS_SECRET_ACCESS_KEY": endpoints.s3_secret_key,
        },
        f"{RELEASE}-api-tokens": {"tokens": endpoints.api_token + "\n"},
        **nats_secrets(endpoints),
    }
    for name, data in secrets.items():
        body = client.V1Secret(metadata=client.V1ObjectMeta(name=name), string_data=data)
        try:
            api.create_namespaced_secret(NAMESPACE, body)
        except ApiException as error:
            if error.status != 409:
                raise
            api.replace_namespaced_secret(name, NAMESPACE, body)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emulsion_devstack.release", description=__doc__
    )
    parser.add_argument("command", choices=["install"])
    add_state_dir(parser)
    args = parser.parse_args(argv)
    stack = LocalStack(args.state_dir)
    try:
        namespace = install(stack)
    except StackError as error:
        return command_failed("cluster-install", error)
    print(f"\nsource {stack.env_file} && kubectl -n {namespace} get pods,ij")
    print(f"The API: kubectl -n {namespace} port-forward svc/{RELEASE}-api 8080:80")
    print("  then EMULSION_API_URL=http://127.0.0.1:8080 emulsion ingest DIR --collection demo")
    return 0


if __name__ == "__main__":
    sys.exit(main())
