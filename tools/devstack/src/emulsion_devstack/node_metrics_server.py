"""The real node's add-on metrics-server: metrics.k8s.io for the CPU HPA and `kubectl
top`, as a host process on the bridge address, registered as an APIService whose Service
has no selector and one endpoint, that address (the apiserver routes to endpoints)."""

from __future__ import annotations

from pathlib import Path

from emulsion_devstack.kubectl import apply
from emulsion_devstack.node_addons import AddOnHost
from emulsion_devstack.node_network import BRIDGE_ADDRESS, aggregated_api
from emulsion_devstack.processes import free_port, spawn, tcp_open, wait_until

# What it creates through the API, for the node's `down` to delete.
OBJECTS = (
    ("", "apiservice/v1beta1.metrics.k8s.io"),
    ("kube-system", "service/metrics-server"),
    ("kube-system", "endpointslice/metrics-server"),
)


def start(host: AddOnHost, binary: Path) -> None:
    port = free_port()
    record = host.state.started(
        spawn(
            "metrics-server",
            [
                str(binary),
                "--kubeconfig",
                host.endpoints.kubeconfig,
                "--authentication-kubeconfig",
                host.endpoints.kubeconfig,
                "--authorization-kubeconfig",
                host.endpoints.kubeconfig,
                "--bind-address",
                BRIDGE_ADDRESS,
                "--secure-port",
                str(port),
                "--cert-dir",
                str(host.node_dir / "metrics-server"),
                "--kubelet-preferred-address-types",
                "InternalIP",
                # The kubelet's serving certificate is self-signed (no CSR signer).
                "--kubelet-insecure-tls",
                # kubelet serves on a free port, which the Node status names.
                "--kubelet-use-node-status-port",
                "--metric-resolution",
                "15s",
            ],
            host.node_dir / "logs" / "metrics-server.log",
        )
    )
    wait_until(record, lambda: tcp_open(BRIDGE_ADDRESS, port), host.timeout)
    apply(
        host.endpoints.kubeconfig,
        aggregated_api(
            "metrics-server",
            "kube-system",
            port,
            {
                "group": "metrics.k8s.io",
                "version": "v1beta1",
                # Its serving certificate is self-signed, as in the upstream manifest.
                "insecureSkipTLSVerify": True,
            },
        ),
    )
    host.say(f"  metrics-server  {BRIDGE_ADDRESS}:{port} (metrics.k8s.io)")
