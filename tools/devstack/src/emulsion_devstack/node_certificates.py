"""The real node's identities, issued from the stack's CA (pki.py): a client certificate
(and kubeconfig) for kubelet, kube-controller-manager and kube-scheduler, the apiserver's
towards kubelets and aggregated API servers, and a serving certificate that names the
kubernetes Service."""

from __future__ import annotations

from pathlib import Path

from emulsion_devstack import pki
from emulsion_devstack.node_network import BRIDGE_ADDRESS, SERVICE_IP

NODE_NAME = "emulsion-node"
# The components whose kubeconfig is `<node dir>/<component>.kubeconfig`.
COMPONENTS = ("kubelet", "kube-controller-manager", "kube-scheduler")


def issue(pki_dir: Path, node_dir: Path, apiserver_url: str) -> dict[str, tuple[Path, Path]]:
    """Each identity's (certificate, key), by what uses it."""
    issued = {
        "kubelet": pki.issue_certificate(
            pki_dir, "node-kubelet", f"system:node:{NODE_NAME}", organization="system:nodes"
        ),
        "kube-controller-manager": pki.issue_certificate(
            pki_dir, "node-controller-manager", "system:kube-controller-manager"
        ),
        "kube-scheduler": pki.issue_certificate(pki_dir, "node-scheduler", "system:kube-scheduler"),
        # What the apiserver shows kubelets (logs, exec, port-forward) and
        # aggregated API servers (metrics-server, KEDA).
        "apiserver-kubelet-client": pki.issue_certificate(
            pki_dir,
            "node-apiserver-kubelet-client",
            "kube-apiserver-kubelet-client",
            organization="system:masters",
        ),
        "front-proxy-client": pki.issue_certificate(
            pki_dir, "node-front-proxy-client", "front-proxy-client"
        ),
        # In-cluster clients dial the kubernetes Service's ClusterIP, so the
        # apiserver's serving certificate must name it.
        "apiserver-serving": pki.issue_certificate(
            pki_dir,
            "node-apiserver",
            "kube-apiserver",
            server_names=(
                "127.0.0.1",
                SERVICE_IP,
                BRIDGE_ADDRESS,
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ),
        ),
    }
    for component in COMPONENTS:
        cert, key = issued[component]
        write_kubeconfig(node_dir / f"{component}.kubeconfig", apiserver_url, pki_dir, cert, key)
    return issued


def write_kubeconfig(path: Path, server: str, pki_dir: Path, cert: Path, key: Path) -> None:
    """A node component's kubeconfig: the stack's CA, the component's own pair."""
    pki.write_kubeconfig(
        path, server, pki_dir / "ca.crt", cert, key, cluster="emulsion", user="component"
    )
