"""The bearer token the API's async session sends: the Kubernetes client's own, wherever
its loader put it (in a pod, the in-cluster loader keys it `BearerToken`)."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client
from kubernetes.config.incluster_config import InClusterConfigLoader

from emulsion_api.kube import _token


def test_the_in_cluster_service_account_token_is_sent(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("service-account-token")
    ca_file = tmp_path / "ca.crt"
    ca_file.write_text("not parsed by the loader")
    configuration = client.Configuration()
    InClusterConfigLoader(
        token_filename=str(token_file),
        cert_filename=str(ca_file),
        environ={"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"},
    ).load_and_set(configuration)
    (header,) = _token(configuration).items()
    # The scheme is case-insensitive (RFC 9110); the loader writes "bearer".
    assert (header[0], header[1].lower()) == ("authorization", "bearer service-account-token")


def test_no_token_sends_no_header() -> None:
    assert _token(client.Configuration()) == {}
