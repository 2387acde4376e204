"""The real node's add-on KEDA, the chart's autoscaler of the processors: keda-operator
(the ScaledObject controller, which makes the HPA and asks the NATS scaler for the lag)
and keda-adapter (external.metrics.k8s.io, which the HPA controller asks through the
apiserver, and which asks the operator over gRPC) as host processes, with KEDA's CRDs
and RBAC from the pinned module the binaries were built from (keda.py).

Certificates come from the node's CA, not from KEDA's own rotation
(--enable-cert-rotation): that writes the Secret `kedaorg-certs` and waits for a pod's
volume to put it into --cert-dir, which a host process has not, and it names the
certificates after Service DNS names nothing here resolves. The node's CA also lets the
APIService verify the adapter (caBundle) where metrics-server needs
insecureSkipTLSVerify."""

from __future__ import annotations

import base64
import shutil
from pathlib import Path

from emulsion_devstack import keda, pki
from emulsion_devstack.binaries import module_source
from emulsion_devstack.kubectl import apply, kubectl, wait_namespace_usable
from emulsion_devstack.node_addons import AddOnHost
from emulsion_devstack.node_certificates import write_kubeconfig
from emulsion_devstack.node_network import BRIDGE_ADDRESS, aggregated_api
from emulsion_devstack.processes import free_port, spawn, tcp_open, wait_until


def start(host: AddOnHost, operator: Path, adapter: Path, data_dir: Path) -> None:
    pki_dir = data_dir / "pki"
    source = module_source("keda-operator")
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": keda.NAMESPACE}}
    crds, rbac = keda.crds(source), keda.rbac(source)
    # Recorded before they exist, so a half-made node's `down` deletes them too. Not
    # the CRDs: deleting them deletes every ScaledObject, whose KEDA finalizer no
    # stopped operator would remove (the CRD would hang in Terminating); like the
    # stack's own CRDs they stay, and the next `make cluster` applies them again.
    host.state.made(
        keda_objects=[
            ("", f"apiservice/{keda.EXTERNAL_METRICS_APISERVICE}"),
            *keda.object_names(rbac),
            ("", f"namespace/{keda.NAMESPACE}"),
        ]
    )
    wait_namespace_usable(host.endpoints.kubeconfig, keda.NAMESPACE)
    apply(host.endpoints.kubeconfig, [namespace, *crds, *rbac])
    kubectl(
        host.endpoints.kubeconfig,
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        *(f"crd/{crd['metadata']['name']}" for crd in crds),
    )
    client_cert, client_key = pki.issue_certificate(pki_dir, "node-keda", keda.USER)
    kubeconfig = host.node_dir / "keda.kubeconfig"
    write_kubeconfig(kubeconfig, host.endpoints.apiserver_url, pki_dir, client_cert, client_key)
    # Each --cert-dir holds what KEDA's gRPC TLS reads: ca.crt, tls.crt, tls.key. The
    # gRPC link is mutual TLS, so the adapter's serving pair is a client one too.
    operator_certs = _cert_dir(host.node_dir, pki_dir, "keda-operator", server_names=("127.0.0.1",))
    adapter_certs = _cert_dir(
        host.node_dir,
        pki_dir,
        "keda-adapter",
        server_names=(
            f"{keda.ADAPTER_SERVICE}.{keda.NAMESPACE}.svc",
            BRIDGE_ADDRESS,
            "127.0.0.1",
        ),
    )
    environment = {
        "KUBECONFIG": str(kubeconfig),
        "POD_NAMESPACE": keda.NAMESPACE,
        "KEDA_CLUSTER_OBJECT_NAMESPACE": keda.NAMESPACE,
        # Every namespace (KEDA requires the variable to be set).
        "WATCH_NAMESPACE": "",
    }
    grpc_port, health_port = free_port(), free_port()
    record = host.state.started(
        spawn(
            "keda-operator",
            [
                str(operator),
                "--leader-elect=false",
                "--zap-log-level=info",
                "--zap-encoder=console",
                # The adapter dials this on loopback (no Service DNS here).
                f"--metrics-service-bind-address=127.0.0.1:{grpc_port}",
                f"--health-probe-bind-address=127.0.0.1:{health_port}",
                "--metrics-bind-address=0",
                f"--cert-dir={operator_certs}",
            ],
            host.node_dir / "logs" / "keda-operator.log",
            env=environment,
        )
    )
    wait_until(record, lambda: tcp_open("127.0.0.1", grpc_port), host.timeout)
    adapter_port = free_port()
    record = host.state.started(
        spawn(
            "keda-adapter",
            [
                str(adapter),
                f"--secure-port={adapter_port}",
                f"--bind-address={BRIDGE_ADDRESS}",
                f"--cert-dir={adapter_certs}",
                f"--tls-cert-file={adapter_certs / 'tls.crt'}",
                f"--tls-private-key-file={adapter_certs / 'tls.key'}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                f"--lister-kubeconfig={kubeconfig}",
                f"--metrics-service-address=127.0.0.1:{grpc_port}",
                # Its Prometheus endpoint binds every interface (KEDA has no
                # address flag for it), so at least on a free port.
                f"--port={free_port()}",
                "--zap-log-level=info",
                "--zap-encoder=console",
            ],
            host.node_dir / "logs" / "keda-adapter.log",
            env=environment,
        )
    )
    wait_until(record, lambda: tcp_open(BRIDGE_ADDRESS, adapter_port), host.timeout)
    ca_bundle = base64.b64encode((pki_dir / "ca.crt").read_bytes()).decode()
    apply(
        host.endpoints.kubeconfig,
        aggregated_api(
            keda.ADAPTER_SERVICE,
            keda.NAMESPACE,
            adapter_port,
            {"group": "external.metrics.k8s.io", "version": "v1beta1", "caBundle": ca_bundle},
        ),
    )
    kubectl(
        host.endpoints.kubeconfig,
        "wait",
        "--for=condition=Available",
        f"--timeout={host.timeout:.0f}s",
        f"apiservice/{keda.EXTERNAL_METRICS_APISERVICE}",
    )
    host.say(
        f"  keda            operator gRPC 127.0.0.1:{grpc_port}, adapter "
        f"{BRIDGE_ADDRESS}:{adapter_port} (external.metrics.k8s.io)"
    )


def _cert_dir(node_dir: Path, pki_dir: Path, name: str, server_names: tuple[str, ...]) -> Path:
    cert, key = pki.issue_certificate(
        pki_dir, f"node-{name}", name, server_names=server_names, client_too=True
    )
    directory = node_dir / name
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pki_dir / "ca.crt", directory / "ca.crt")
    shutil.copyfile(cert, directory / "tls.crt")
    shutil.copyfile(key, directory / "tls.key")
    (directory / "tls.key").chmod(0o600)
    return directory
