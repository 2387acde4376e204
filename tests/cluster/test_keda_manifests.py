"""KEDA's API objects for the real node come from the pinned module the binaries are
built from (keda.py): its CRDs patched as its kustomization patches them, its RBAC bound
to the user of the node-issued certificate. Here, not in tests/stack: reading the module
needs it in the Go module cache, as building KEDA for the node does."""

from __future__ import annotations

from pathlib import Path

import pytest

from emulsion_devstack import keda
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
