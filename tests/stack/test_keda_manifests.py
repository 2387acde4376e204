"""KEDA's API objects for the real node come from the pinned module the binaries are
built from (keda.py): its CRDs patched as its kustomization patches them, its RBAC bound
to the user of the node-issued certificate; and that certificate can both serve and
authenticate (KEDA's operator-adapter gRPC is mutual TLS with one pair each)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from emulsion_devstack import keda, pki
from emulsion_devstack.binaries import KEDA_VERSION, module_source


@pytest.fixture(scope="module")
def source() -> Path:
    return module_source("keda-operator")


def test_the_source_is_the_pinned_module(source: Path) -> None:
    assert source.name.endswith(f"@{KEDA_VERSION}")
    assert (source / "config" / "crd" / "kustomization.yaml").is_file()


def test_crds_are_keda_s_six_with_the_kustomize_patches_applied(source: Path) -> None:
    crds = {crd["metadata"]["name"]: crd for crd in keda.crds(source)}
    assert {"scaledobjects.keda.sh", "scaledjobs.keda.sh"} <= set(crds)
    assert len(crds) == 6
    schema = crds["scaledobjects.keda.sh"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    behavior = schema["properties"]["spec"]["properties"]["advanced"]["properties"][
        "horizontalPodAutoscalerConfig"
    ]["properties"]["behavior"]["properties"]
    window = behavior["scaleDown"]["properties"]["stabilizationWindowSeconds"]
    assert (window["minimum"], window["maximum"]) == (0, 3600)
    job = crds["scaledjobs.keda.sh"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    triggers = job["properties"]["spec"]["properties"]["triggers"]["items"]["properties"]
    assert "metricType" not in triggers


def test_rbac_binds_the_node_user_and_keeps_the_hpa_controller(source: Path) -> None:
    subjects = [
        subject for manifest in keda.rbac(source) for subject in manifest.get("subjects", [])
    ]
    assert {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": keda.USER} in (
        subjects
    )
    assert keda.UPSTREAM_SUBJECT not in subjects
    assert {
        "kind": "ServiceAccount",
        "name": "horizontal-pod-autoscaler",
        "namespace": "kube-system",
    } in (subjects)


@pytest.mark.parametrize(
    ("operations", "expected"),
    [
        ([{"op": "add", "path": "/a/b", "value": 1}], {"a": {"b": 1, "x": [1, 2]}}),
        ([{"op": "add", "path": "/a/x/-", "value": 3}], {"a": {"x": [1, 2, 3]}}),
        ([{"op": "add", "path": "/a/x/0", "value": 0}], {"a": {"x": [0, 1, 2]}}),
        ([{"op": "remove", "path": "/a/x"}], {"a": {}}),
        ([{"op": "remove", "path": "/a/x/1"}], {"a": {"x": [1]}}),
    ],
)
def test_json_patch_adds_and_removes(
    operations: list[dict[str, Any]], expected: dict[str, Any]
) -> None:
    document = {"a": {"x": [1, 2]}}
    assert keda.json_patch(document, operations) == expected
    assert document == {"a": {"x": [1, 2]}}


def test_json_patch_refuses_what_it_does_not_implement() -> None:
    with pytest.raises(ValueError, match="replace"):
        keda.json_patch({"a": 1}, [{"op": "replace", "path": "/a", "value": 2}])


@pytest.mark.parametrize(
    ("server_names", "client_too", "usages"),
    [
        ((), False, {ExtendedKeyUsageOID.CLIENT_AUTH}),
        (("127.0.0.1",), False, {ExtendedKeyUsageOID.SERVER_AUTH}),
        (
            ("127.0.0.1",),
            True,
            {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH},
        ),
    ],
)
def test_issued_certificates_serve_authenticate_or_both(
    tmp_path: Path, server_names: tuple[str, ...], client_too: bool, usages: set[Any]
) -> None:
    pki.make_apiserver_pki(tmp_path)
    cert_path, _ = pki.issue_certificate(
        tmp_path, "subject", "subject", server_names=server_names, client_too=client_too
    )
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) == usages
