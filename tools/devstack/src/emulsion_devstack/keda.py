"""KEDA's API objects for the real node, read from the pinned KEDA module (the one
binaries.py builds keda-operator and keda-adapter from), so the CRDs and RBAC always
match the binaries: `config/crd` with its kustomize patches applied, and the operator's
and metrics adapter's RBAC from `config/rbac` and `config/metrics-server`.

The operator and the adapter run as host processes (node.py), not as pods of the
ServiceAccount keda/keda-operator that KEDA's manifests bind; they present a client
certificate of the node's CA for the user `keda-operator` instead, so the bindings'
subjects name that user.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

NAMESPACE = "keda"
# KEDA's names: the adapter's Service is what the APIService points at, and the
# operator and adapter share one identity (as they share one ServiceAccount upstream).
USER = "keda-operator"
ADAPTER_SERVICE = "keda-metrics-apiserver"
EXTERNAL_METRICS_APISERVICE = "v1beta1.external.metrics.k8s.io"
UPSTREAM_SUBJECT = {"kind": "ServiceAccount", "name": "keda-operator", "namespace": NAMESPACE}
RBAC_FILES = (
    "config/rbac/role.yaml",
    "config/rbac/role_binding.yaml",
    "config/metrics-server/role.yaml",
    "config/metrics-server/role_binding.yaml",
)


def crds(source: Path) -> list[dict[str, Any]]:
    """The CustomResourceDefinitions of config/crd/kustomization.yaml, patched as it
    patches them (bounds on stabilizationWindowSeconds and the like)."""
    kustomization = yaml.safe_load((source / "config/crd/kustomization.yaml").read_text())
    documents = {}
    for resource in kustomization["resources"]:
        crd = yaml.safe_load((source / "config/crd" / resource).read_text())
        documents[crd["metadata"]["name"]] = crd
    for patch in kustomization.get("patches", []):
        target = patch["target"]["name"]
        operations = yaml.safe_load((source / "config/crd" / patch["path"]).read_text())
        documents[target] = json_patch(documents[target], operations)
    return list(documents.values())


def rbac(source: Path) -> list[dict[str, Any]]:
    """KEDA's roles and bindings, the ServiceAccount subject replaced by the user of the
    node-issued client certificate; other subjects (the HPA controller's) stay."""
    manifests = []
    for name in RBAC_FILES:
        for document in yaml.safe_load_all((source / name).read_text()):
            if not document:
                continue
            document = copy.deepcopy(document)
            for subject in document.get("subjects", []):
                if subject == UPSTREAM_SUBJECT:
                    subject.clear()
                    subject.update(
                        {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": USER}
                    )
            manifests.append(document)
    return manifests


def object_names(manifests: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(namespace or "", kind/name) of each manifest, as `kubectl delete` takes them."""
    return [
        (m["metadata"].get("namespace", ""), f"{m['kind'].lower()}/{m['metadata']['name']}")
        for m in manifests
    ]


def json_patch(document: dict[str, Any], operations: list[dict[str, Any]]) -> dict[str, Any]:
    """RFC 6902 `add` and `remove`, the two operations KEDA's CRD patches use."""
    patched = copy.deepcopy(document)
    for operation in operations:
        *parents, last = [
            part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]
        ]
        node: Any = patched
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        kind = operation["op"]
        if kind == "add":
            value = copy.deepcopy(operation["value"])
            if isinstance(node, list):
                node.insert(len(node) if last == "-" else int(last), value)
            else:
                node[last] = value
        elif kind == "remove":
            del node[int(last) if isinstance(node, list) else last]
        else:
            raise ValueError(f"unsupported JSON patch operation {kind!r} in KEDA's CRD patches")
    return patched
