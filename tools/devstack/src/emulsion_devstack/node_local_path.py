"""The real node's add-on local-path-provisioner: the default StorageClass `local-path`,
for the processors' generic ephemeral volumes."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from emulsion_devstack.kubectl import apply
from emulsion_devstack.node_addons import AddOnHost
from emulsion_devstack.processes import spawn

NAMESPACE = "local-path-storage"
# What it creates through the API, for the node's `down` to delete.
OBJECTS = (
    ("", "storageclass/local-path"),
    ("", f"namespace/{NAMESPACE}"),
)


def start(host: AddOnHost, binary: Path) -> None:
    """Each PersistentVolumeClaim gets a directory under the stack's data dir, made and
    removed by a helper pod of the Python base image."""
    helper_image = _helper_image()
    # In the stack's data dir, not the node's: the PersistentVolumes live in the
    # stack's etcd, so their directories last as long as it does (make down), and a
    # `make cluster-down && make cluster` finds the pods' volumes where they were.
    volumes = Path(host.endpoints.data_dir) / "node-volumes"
    volumes.mkdir(parents=True, exist_ok=True)
    helper_pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "helper-pod"},
        "spec": {
            "containers": [
                {"name": "helper-pod", "image": helper_image, "imagePullPolicy": "Never"}
            ]
        },
    }
    manifests = [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}},
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "local-path-provisioner", "namespace": NAMESPACE},
        },
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "local-path-config", "namespace": NAMESPACE},
            "data": {
                "config.json": json.dumps(
                    {
                        "nodePathMap": [
                            {
                                "node": "DEFAULT_PATH_FOR_NON_LISTED_NODES",
                                "paths": [str(volumes)],
                            }
                        ]
                    }
                ),
                "setup": '#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n',
                "teardown": '#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n',
                "helperPod.yaml": yaml.safe_dump(helper_pod),
            },
        },
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {
                "name": "local-path",
                "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
            },
            "provisioner": "rancher.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Delete",
        },
    ]
    apply(host.endpoints.kubeconfig, manifests)
    config_file = host.node_dir / "local-path-config.json"
    config_file.write_text(manifests[2]["data"]["config.json"])  # type: ignore[index]
    helper_file = host.node_dir / "local-path-helper-pod.yaml"
    helper_file.write_text(yaml.safe_dump(helper_pod))
    host.state.started(
        spawn(
            "local-path-provisioner",
            [
                str(binary),
                "start",
                "--config",
                str(config_file),
                "--provisioner-name",
                "rancher.io/local-path",
                "--namespace",
                NAMESPACE,
                "--helper-image",
                helper_image,
                "--kubeconfig",
                host.endpoints.kubeconfig,
                "--configmap-name",
                "local-path-config",
                "--service-account-name",
                "local-path-provisioner",
                "--helper-pod-file",
                str(helper_file),
            ],
            host.node_dir / "logs" / "local-path-provisioner.log",
        )
    )
    host.say(f"  local-path      StorageClass local-path (default) in {volumes}")


def _helper_image() -> str:
    # The Python base (make images) has the sh, mkdir and rm the helper pods run.
    from emulsion_devstack import images

    return images.base_ref()
