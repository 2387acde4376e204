"""How the real node's runtime and components are configured: containerd's config.toml,
kubelet's KubeletConfiguration, and the command lines of kubelet,
kube-controller-manager and kube-scheduler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from emulsion_devstack.node_certificates import NODE_NAME
from emulsion_devstack.node_cgroups import CGROUP_NAME
from emulsion_devstack.node_network import BRIDGE_ADDRESS, CNI_BIN_DIR
from emulsion_devstack.processes import free_port

PAUSE_IMAGE = "localhost/emulsion/pause:3.10"  # images.PAUSE_IMAGE


def containerd_config(base: Path, cni_conf_dir: Path) -> str:
    return f"""\
version = 2
root = "{base / "root"}"
state = "{base / "state"}"
# The VM may not lower a process's OOM score; CRI asks for -998 for the pause
# container and would fail every sandbox.
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.internal.v1.tracing", "io.containerd.tracing.processor.v1.otlp"]

[grpc]
  address = "{base / "containerd.sock"}"

[ttrpc]
  address = "{base / "containerd.sock.ttrpc"}"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  enable_selinux = false
  disable_apparmor = true
  # Every image is built here and imported; nothing is ever pulled.
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  max_container_log_line_size = 16384
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "/usr/sbin/runc"
        Root = "{base / "runc"}"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_BIN_DIR}"
    conf_dir = "{cni_conf_dir}"
    max_conf_num = 1
"""


def kubelet_config(node_dir: Path, socket: Path, ca: Path, healthz: int) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        # Served on the bridge address only: the apiserver (logs, exec, port-forward)
        # and metrics-server reach it there.
        "address": BRIDGE_ADDRESS,
        "port": free_port(),
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": f"unix://{socket}",
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{CGROUP_NAME}",
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        # This machine has cgroup v1 only (the cgroup2 mount has no controllers).
        "failCgroupV1": False,
        "failSwapOn": False,
        "podLogsDir": str(node_dir / "pod-logs"),
        "staticPodPath": "",
        "resolvConf": "/etc/resolv.conf",
        "clusterDomain": "cluster.local",
        "serializeImagePulls": False,
        # A shared developer disk: evict only when it is really full, and never
        # collect the images (nothing can be pulled back).
        "evictionHard": {
            "memory.available": "200Mi",
            "nodefs.available": "2%",
            "imagefs.available": "2%",
            "nodefs.inodesFree": "2%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "maxPods": 110,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "registerNode": True,
        "nodeStatusReportFrequency": "10s",
        "nodeStatusUpdateFrequency": "5s",
        "shutdownGracePeriod": "0s",
        "volumePluginDir": str(node_dir / "kubelet" / "volume-plugins"),
    }


def kubelet_argv(binary: Path, config: Path, node_dir: Path, root: Path) -> list[str]:
    return [
        str(binary),
        "--config",
        str(config),
        "--kubeconfig",
        str(node_dir / "kubelet.kubeconfig"),
        "--root-dir",
        str(root / "root"),
        "--cert-dir",
        str(root / "pki"),
        "--hostname-override",
        NODE_NAME,
        "--node-ip",
        BRIDGE_ADDRESS,
        "--v=1",
    ]


def _control_plane_argv(binary: Path, kubeconfig: Path) -> list[str]:
    """What kube-controller-manager and kube-scheduler share: one kubeconfig for
    everything, a secure port on loopback, no leader election."""
    return [
        str(binary),
        "--kubeconfig",
        str(kubeconfig),
        "--authentication-kubeconfig",
        str(kubeconfig),
        "--authorization-kubeconfig",
        str(kubeconfig),
        "--bind-address",
        "127.0.0.1",
        "--secure-port",
        str(free_port()),
        "--leader-elect=false",
    ]


def controller_manager_argv(binary: Path, kubeconfig: Path, pki_dir: Path) -> list[str]:
    return [
        *_control_plane_argv(binary, kubeconfig),
        "--use-service-account-credentials=true",
        "--service-account-private-key-file",
        str(pki_dir / "sa.key"),
        "--root-ca-file",
        str(pki_dir / "ca.crt"),
        "--cluster-signing-cert-file",
        str(pki_dir / "ca.crt"),
        "--cluster-signing-key-file",
        str(pki_dir / "ca.key"),
        "--controllers",
        "*,-nodeipam,-cloud-node-lifecycle,-service-lb-controller",
        "--allocate-node-cidrs=false",
        "--configure-cloud-routes=false",
        # A pod stuck on a dead node is rescheduled within a minute, not five.
        "--node-monitor-grace-period",
        "40s",
        # HPA: the stock 15 s sync; each HPA has its own scale-down window
        # (the chart's autoscaling.scaleDownStabilizationSeconds).
        "--v=1",
    ]


def scheduler_argv(binary: Path, kubeconfig: Path) -> list[str]:
    return [*_control_plane_argv(binary, kubeconfig), "--v=1"]
