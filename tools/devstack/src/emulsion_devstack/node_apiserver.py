"""The stack's apiserver as a cluster's: the flags the real node starts it with (same
port, same etcd): the ServiceAccount admission plugin (pods get their tokens), the Node
authorizer, the aggregation layer (metrics-server, KEDA), a client certificate towards
kubelets, and a serving certificate that names the kubernetes Service. The node's `down`
starts it with its old flags again."""

from __future__ import annotations

from pathlib import Path


def cluster_argv(
    original: list[str], pki_dir: Path, certs: dict[str, tuple[Path, Path]]
) -> list[str]:
    """`original` (the stack's apiserver command line) with the node's flags; `certs` as
    node_certificates.issue returns them."""
    argv = _drop_flag(original, "--disable-admission-plugins")
    argv = _set_flag(argv, "--tls-cert-file", str(certs["apiserver-serving"][0]))
    argv = _set_flag(argv, "--tls-private-key-file", str(certs["apiserver-serving"][1]))
    extra = {
        "--enable-admission-plugins": "ServiceAccount,NodeRestriction",
        # The Node authorizer gives the kubelet exactly what its pods need.
        "--authorization-mode": "Node,RBAC",
        "--kubelet-client-certificate": str(certs["apiserver-kubelet-client"][0]),
        "--kubelet-client-key": str(certs["apiserver-kubelet-client"][1]),
        "--kubelet-preferred-address-types": "InternalIP",
        "--enable-aggregator-routing": "true",
        "--requestheader-client-ca-file": str(pki_dir / "ca.crt"),
        "--requestheader-allowed-names": "front-proxy-client",
        "--requestheader-username-headers": "X-Remote-User",
        "--requestheader-group-headers": "X-Remote-Group",
        "--requestheader-extra-headers-prefix": "X-Remote-Extra-",
        "--proxy-client-cert-file": str(certs["front-proxy-client"][0]),
        "--proxy-client-key-file": str(certs["front-proxy-client"][1]),
    }
    for flag, value in extra.items():
        argv = _set_flag(argv, flag, value)
    return argv


def _drop_flag(argv: list[str], flag: str) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == flag:
            skip = True
            continue
        if arg.startswith(flag + "="):
            continue
        out.append(arg)
    return out


def _set_flag(argv: list[str], flag: str, value: str) -> list[str]:
    return [*_drop_flag(argv, flag), f"{flag}={value}"]
