"""A real single-node cluster on top of the local stack: containerd, kubelet,
kube-controller-manager and kube-scheduler, so the chart runs as pods; with
local-path-provisioner, metrics-server and KEDA (operator and metrics adapter) as host
processes, so its volumes and both of its autoscalers work.

One implementation for `make cluster` / `make cluster-down` and the tests in
tests/cluster. Everything the node makes is named in `<state_dir>/node/node.json` and
removed by `down`:

* processes, by pid (ProcessRecord), and every process that lands in the node's
  cgroups (containerd's shims, the containers) by the cgroups themselves;
* the private mount namespace that containerd and kubelet share (held by one `sleep`
  process): kubelet's and the CNI plugins' writes of host kernel parameters land on
  files bind-mounted over /proc/sys inside it, so the host's values never change, and
  every mount containerd and kubelet make (overlays, tmpfs volumes, netns) vanishes
  with it;
* the cgroups `/emulsion-node` in each cgroup v1 hierarchy;
* the bridge, its address and the iptables chain EMULSION-NODE (nat);
* containerd's root and state, under `<state_dir>/node/`.

Networking: pods live on the bridge `emulsion0` (10.244.0.0/24, the bridge plugin with
host-local IPAM), reached from the host directly; nothing is routed or masqueraded
beyond the machine. The stack's servers listen on 127.0.0.1 only, so a relay process
(relay.py) listens on the bridge address with the same ports, and the kubernetes
Service's ClusterIP (10.0.0.1:443) is DNAT'ed to the relay for in-cluster clients.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from emulsion_devstack import keda, pki
from emulsion_devstack.binaries import ensure_binary, module_source
from emulsion_devstack.processes import (
    ProcessRecord,
    StackError,
    free_port,
    spawn,
    stop_all,
    wait_until,
)
from emulsion_devstack.services import SERVICES
from emulsion_devstack.stack import Endpoints, LocalStack

NODE_NAME = "emulsion-node"
BRIDGE = "emulsion0"
POD_CIDR = ipaddress.ip_network("10.244.0.0/24")
BRIDGE_ADDRESS = str(next(POD_CIDR.hosts()))  # 10.244.0.1
SERVICE_IP = "10.0.0.1"  # the kubernetes Service in the stack's 10.0.0.0/24
CGROUP_NAME = "emulsion-node"
NAT_CHAIN = "EMULSION-NODE"
LOCAL_PATH_NAMESPACE = "local-path-storage"
# Which state dir's node holds this machine (one node per machine).
CLAIM = Path("/run/emulsion-node.owner")
HOST_PATHS = ("/run/containerd", "/var/run/netns", "/var/lib/cni")
CNI_NETWORK = "emulsion-node"
CNI_BIN_DIR = Path("/usr/lib/cni")
PAUSE_IMAGE = "localhost/emulsion/pause:3.10"  # images.PAUSE_IMAGE
START_TIMEOUT = 120.0
# Host kernel parameters kubelet and the bridge plugin set when they differ; inside the
# node's mount namespace each is a private file, so the host's values stay as they are.
PRIVATE_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/forwarding",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
)
NODE_COMMANDS = {
    "containerd": "/usr/bin/containerd",
    "runc": "/usr/sbin/runc",
    "bridge plugin": str(CNI_BIN_DIR / "bridge"),
    "iptables": "/usr/sbin/iptables",
    "unshare": "/usr/bin/unshare",
    "nsenter": "/usr/bin/nsenter",
}


@dataclass(frozen=True)
class NodeInfo:
    """What clients of a running node need (also written to node.json)."""

    name: str
    bridge_address: str
    containerd_socket: str
    # host:port on the bridge address where pods reach the stack's servers.
    apiserver: str
    nats: str
    nats_monitor: str
    s3: str


def host_snapshot() -> dict[str, Any]:
    """What of the host a node touches, to compare before `up` and after `down`:
    kernel parameters, network links, iptables rules, mounts, cgroups, runtime paths."""
    iptables = {
        f"{command} {table}": sorted(
            # Chains (":NAME POLICY [counters]") by name; rules as they are.
            line.split()[0] if line.startswith(":") else line
            for line in _run([command, "-t", table], check=False).stdout.splitlines()
            if not line.startswith("#")
        )
        for command in ("iptables-save", "ip6tables-save")
        for table in ("mangle", "nat", "filter")
    }
    mounts = sorted(
        line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )
    return {
        "sysctls": host_sysctls(),
        "links": sorted(p.name for p in Path("/sys/class/net").iterdir()),
        "iptables": iptables,
        "mounts": mounts,
        "cgroups": sorted(
            str(h / CGROUP_NAME) for h in _cgroup_hierarchies() if (h / CGROUP_NAME).exists()
        ),
        "paths": {path: Path(path).exists() for path in HOST_PATHS},
    }


def host_sysctls() -> dict[str, str]:
    """The host's values of the kernel parameters the node keeps private."""
    values = {}
    for name in PRIVATE_SYSCTLS:
        path = Path("/proc/sys") / name
        with contextlib.suppress(OSError):
            values[name] = path.read_text().strip()
    return values


class Node:
    """The node on top of `stack` (which must be running)."""

    def __init__(self, stack: LocalStack, say: Callable[[str], None] = print) -> None:
        self.stack = stack
        self.say = say
        self.dir = stack.state_dir / "node"
        self.state_file = self.dir / "node.json"

    # -- public -------------------------------------------------------------------------

    def up(self) -> NodeInfo:
        info = self.running()
        if info is not None:
            self.say(f"node already running (state in {self.dir})")
            return info
        if self.state_file.exists():
            self.say("found a node that is not wholly running; removing what is left of it")
            self.down()
        endpoints = self.stack.running()
        if endpoints is None:
            raise StackError("the stack is not running: make up first")
        missing = [f"{what} ({path})" for what, path in NODE_COMMANDS.items() if not _exe(path)]
        if missing:
            raise StackError(
                f"missing: {', '.join(missing)}; run tools/install-node-packages.sh "
                "(make cluster does)"
            )
        binaries = {
            name: ensure_binary(name)
            for name in (
                "kubelet",
                "kube-controller-manager",
                "kube-scheduler",
                "local-path-provisioner",
                "metrics-server",
                "keda-operator",
                "keda-adapter",
            )
        }
        self._claim_machine()
        began = time.monotonic()
        self.dir.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {
            "processes": [],
            "host_sysctls": host_sysctls(),
            "made": {},
        }
        self._write_state(state)
        try:
            self._stop_service_processes()
            data_dir = Path(endpoints.data_dir)
            certs = self._issue_certificates(data_dir / "pki")
            self._reconfigure_apiserver(state, data_dir / "pki", certs)
            self._make_cgroups(state)
            self._make_bridge(state)
            info = self._start_relay(state, endpoints)
            holder = self._start_namespace_holder(state)
            socket = self._start_containerd(state, holder)
            info = NodeInfo(**{**info.__dict__, "containerd_socket": str(socket)})
            ca = data_dir / "pki" / "ca.crt"
            self._start_controller_manager(state, binaries["kube-controller-manager"], data_dir)
            self._start_scheduler(state, binaries["kube-scheduler"], ca, endpoints)
            self._start_kubelet(state, binaries["kubelet"], holder, socket, ca, endpoints)
            self._wait_node_ready(endpoints)
            self._start_local_path_provisioner(state, binaries["local-path-provisioner"], endpoints)
            self._start_metrics_server(state, binaries["metrics-server"], endpoints)
            self._start_keda(
                state, binaries["keda-operator"], binaries["keda-adapter"], data_dir, endpoints
            )
        except BaseException:
            self.down()
            raise
        state["info"] = info.__dict__
        self._write_state(state)
        self.say(f"node {NODE_NAME} ready in {time.monotonic() - began:.1f}s")
        return info

    def down(self, restore_apiserver: bool = True) -> list[str]:
        """Remove everything `up` made; idempotent, and tolerant of a half-made node.
        `restore_apiserver=False` when the stack is going down anyway."""
        state = self._read_state()
        if state is None:
            return []
        records = [ProcessRecord.from_json(raw) for raw in reversed(state.get("processes", []))]
        stopped = [r.name for r in records if r.alive()]
        # The kubelet first, so nothing restarts containers while they are killed.
        stop_all([r for r in records if r.name == "kubelet"], grace=10)
        _kill_cgroup_tree()
        stop_all(records, grace=10)
        _remove_cgroups()
        made = state.get("made", {})
        if made.get("nat_chain"):
            _remove_nat_chain()
        if made.get("bridge"):
            # The pods' veths first: a pod's network namespace may outlive its processes
            # for a while, and with it the host end of its veth, which deleting the
            # bridge would only detach.
            for veth in _bridge_ports():
                _run(["ip", "link", "delete", veth], check=False)
            _run(["ip", "link", "delete", BRIDGE], check=False)
        if "kube_chains" in made:
            # kubelet's chains (KUBE-FIREWALL, KUBE-IPTABLES-HINT, its canaries) and the
            # jumps to them, where the host had none before the node.
            _remove_new_kube_chains(made["kube_chains"])
        endpoints = self.stack.running()
        if endpoints is not None and restore_apiserver:
            # The node's API objects: an APIService left pointing at a stopped
            # metrics-server or KEDA adapter would fail every client's discovery.
            keda_objects = [(str(ns), str(name)) for ns, name in made.get("keda_objects", [])]
            _delete(endpoints.kubeconfig, [*NODE_OBJECTS, *keda_objects])
        if made.get("apiserver_argv") and restore_apiserver:
            self._restore_apiserver(made["apiserver_argv"])
        for path, before in (made.get("host_paths") or {}).items():
            _remove_new_entries(Path(path), before)
        shutil.rmtree(self.dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            if CLAIM.read_text().strip() == str(self.dir):
                CLAIM.unlink()
        return stopped

    def _claim_machine(self) -> None:
        """One node per machine: the bridge, the pod range and the cgroup names are
        fixed. A node of another state dir that still runs is not ours to replace."""
        try:
            owner = Path(CLAIM.read_text().strip())
        except FileNotFoundError:
            owner = None
        if owner is not None and owner != self.dir and (owner / "node.json").exists():
            other = Node(LocalStack(owner.parent), say=self.say)
            if other.running() is not None:
                raise StackError(
                    f"a node of {owner.parent} runs on this machine (one node per machine); "
                    f"remove it first: python -m emulsion_devstack.node down --state-dir "
                    f"{owner.parent}"
                )
            self.say(f"removing what is left of the node of {owner.parent}")
            other.down()
        CLAIM.parent.mkdir(parents=True, exist_ok=True)
        CLAIM.write_text(f"{self.dir}\n")

    def running(self) -> NodeInfo | None:
        state = self._read_state()
        if not state or "info" not in state:
            return None
        records = [ProcessRecord.from_json(raw) for raw in state["processes"]]
        if not records or not all(r.alive() for r in records):
            return None
        return NodeInfo(**state["info"])

    def processes(self) -> list[ProcessRecord]:
        state = self._read_state()
        return [ProcessRecord.from_json(raw) for raw in state.get("processes", [])] if state else []

    def ctr(self, *args: str, input_file: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run `ctr` in the k8s.io namespace of the node's containerd."""
        socket = self.dir / "containerd" / "containerd.sock"
        command = ["ctr", "--address", str(socket), "--namespace", "k8s.io", *args]
        if input_file is None:
            return _run(command)
        with input_file.open("rb") as stdin:
            result = subprocess.run(
                command, stdin=stdin, capture_output=True, text=True, check=False
            )
        if result.returncode != 0:
            raise StackError(f"{' '.join(command)} failed:\n{result.stderr}")
        return result

    # -- steps ----------------------------------------------------------------------------

    def _stop_service_processes(self) -> None:
        # The pods take the place of `make up`'s service processes; two sets of
        # processors on one queue would make every test's counts meaningless.
        for record in self.stack.processes():
            if record.name in SERVICES and record.alive():
                self.say(f"  stopping the {record.name} process (pods take its place)")
                self.stack.stop(record.name)

    def _issue_certificates(self, pki_dir: Path) -> dict[str, tuple[Path, Path]]:
        issued = {
            "kubelet": pki.issue_certificate(
                pki_dir, "node-kubelet", f"system:node:{NODE_NAME}", organization="system:nodes"
            ),
            "kube-controller-manager": pki.issue_certificate(
                pki_dir, "node-controller-manager", "system:kube-controller-manager"
            ),
            "kube-scheduler": pki.issue_certificate(
                pki_dir, "node-scheduler", "system:kube-scheduler"
            ),
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
        for component in ("kubelet", "kube-controller-manager", "kube-scheduler"):
            cert, key = issued[component]
            _write_kubeconfig(
                self.dir / f"{component}.kubeconfig",
                self.stack.running().apiserver_url,  # type: ignore[union-attr]
                pki_dir / "ca.crt",
                cert,
                key,
            )
        return issued

    def _reconfigure_apiserver(
        self, state: dict[str, Any], pki_dir: Path, certs: dict[str, tuple[Path, Path]]
    ) -> None:
        """Restart the stack's apiserver (same port, same etcd) as a cluster's: with the
        ServiceAccount admission plugin (pods get their tokens), the aggregation layer
        (metrics-server, KEDA), a client certificate towards kubelets, and a serving
        certificate that names the kubernetes Service. `down` restores the old flags."""
        record = self.stack.record("kube-apiserver")
        original = list(record.argv)
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
        state["made"]["apiserver_argv"] = original
        self._write_state(state)
        self._replace_apiserver_argv(argv)
        self.say("  kube-apiserver  restarted with the node's flags (aggregation, SA tokens)")

    def _restore_apiserver(self, argv: list[str]) -> None:
        with contextlib.suppress(StackError):
            if self.stack.running() is not None or self.stack.processes():
                self._replace_apiserver_argv(argv)

    def _replace_apiserver_argv(self, argv: list[str]) -> None:
        state = self.stack._read_state()
        if state is None:
            raise StackError("the stack is not running")
        for raw in state["processes"]:
            if raw["name"] == "kube-apiserver":
                raw["argv"] = argv
        self.stack._write_state(state)
        self.stack.restart("kube-apiserver", grace=10)

    def _make_cgroups(self, state: dict[str, Any]) -> None:
        for hierarchy in _cgroup_hierarchies():
            for sub in ("", "runtime"):
                path = hierarchy / CGROUP_NAME / sub
                path.mkdir(exist_ok=True)
                if hierarchy.name == "cpuset":
                    # v1 cpuset: a child has no CPUs or memory nodes until given its
                    # parent's, and takes no tasks before that.
                    for knob in ("cpuset.cpus", "cpuset.mems"):
                        (path / knob).write_text((path.parent / knob).read_text())
        state["made"]["cgroups"] = True
        self._write_state(state)

    def _make_bridge(self, state: dict[str, Any]) -> None:
        # Made here, not by the bridge plugin at the first pod, so the relay can listen
        # on its address before any pod exists. The plugin finds it and keeps it.
        if not Path(f"/sys/class/net/{BRIDGE}").exists():
            _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        state["made"]["bridge"] = True
        # kubelet adds chains of its own (KUBE-FIREWALL with jumps from INPUT and
        # OUTPUT, KUBE-IPTABLES-HINT, canaries); those the host has now are not ours.
        state["made"]["kube_chains"] = _kube_chains()
        self._write_state(state)
        address = f"{BRIDGE_ADDRESS}/{POD_CIDR.prefixlen}"
        if address not in _run(["ip", "-o", "addr", "show", "dev", BRIDGE]).stdout:
            _run(["ip", "addr", "add", address, "dev", BRIDGE])
        _run(["ip", "link", "set", BRIDGE, "up"])

    def _start_relay(self, state: dict[str, Any], endpoints: Endpoints) -> NodeInfo:
        ports = {
            "apiserver": _port(endpoints.apiserver_url),
            "nats": _port(endpoints.nats_url),
            "nats_monitor": _port(endpoints.nats_monitor_url),
            "s3": _port(endpoints.s3_endpoint_url),
        }
        routes = [f"{BRIDGE_ADDRESS}:{p}=127.0.0.1:{p}" for p in ports.values()]
        record = self._started(
            state,
            spawn(
                "relay",
                [sys.executable, "-m", "emulsion_devstack.relay", *routes],
                self.dir / "logs" / "relay.log",
            ),
        )
        wait_until(record, lambda: _tcp_open(BRIDGE_ADDRESS, ports["apiserver"]), START_TIMEOUT)
        # In-cluster clients dial the kubernetes Service (10.0.0.1:443); without
        # kube-proxy, one DNAT rule for traffic from the bridge sends it to the relay.
        _ensure_nat_chain()
        state["made"]["nat_chain"] = True
        self._write_state(state)
        _run(
            [
                "iptables",
                "-w",
                "-t",
                "nat",
                "-A",
                NAT_CHAIN,
                "-d",
                f"{SERVICE_IP}/32",
                "-p",
                "tcp",
                "--dport",
                "443",
                "-j",
                "DNAT",
                "--to-destination",
                f"{BRIDGE_ADDRESS}:{ports['apiserver']}",
            ]
        )
        return NodeInfo(
            name=NODE_NAME,
            bridge_address=BRIDGE_ADDRESS,
            containerd_socket="",
            apiserver=f"{BRIDGE_ADDRESS}:{ports['apiserver']}",
            nats=f"{BRIDGE_ADDRESS}:{ports['nats']}",
            nats_monitor=f"{BRIDGE_ADDRESS}:{ports['nats_monitor']}",
            s3=f"{BRIDGE_ADDRESS}:{ports['s3']}",
        )

    def _start_namespace_holder(self, state: dict[str, Any]) -> ProcessRecord:
        sysctl_dir = self.dir / "sysctl"
        binds = []
        for name, value in state["host_sysctls"].items():
            private = sysctl_dir / name.replace("/", ".")
            private.parent.mkdir(parents=True, exist_ok=True)
            private.write_text(value + "\n")
            binds.append(f"mount --bind {private} /proc/sys/{name}")
        # Paths the runtime makes on the host outside its configured root (containerd
        # 1.6's shim sockets, the netns files, libcni's cache): what is in them now is
        # not the node's; whatever `down` finds beyond that is.
        state["made"]["host_paths"] = {
            path: sorted(p.name for p in Path(path).iterdir()) if Path(path).is_dir() else None
            for path in HOST_PATHS
        }
        script = " && ".join([*binds, f"exec sleep {365 * 24 * 3600}"])
        record = self._started(
            state,
            spawn(
                "node-namespace",
                _in_cgroup(["unshare", "--mount", "--propagation", "private", "sh", "-c", script]),
                self.dir / "logs" / "node-namespace.log",
            ),
        )
        wait_until(record, lambda: _holder_ready(record.pid), 10, "holding the namespace")
        return record

    def _start_containerd(self, state: dict[str, Any], holder: ProcessRecord) -> Path:
        base = self.dir / "containerd"
        socket = base / "containerd.sock"
        (self.dir / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
        (self.dir / "cni" / "net.d" / "10-emulsion.conflist").write_text(
            json.dumps(_cni_config(self.dir / "cni" / "ipam"), indent=2)
        )
        config = base / "config.toml"
        base.mkdir(parents=True, exist_ok=True)
        config.write_text(_containerd_config(base, self.dir / "cni" / "net.d"))
        record = self._started(
            state,
            spawn(
                "containerd",
                _in_cgroup(_nsenter(holder.pid, ["containerd", "--config", str(config)])),
                self.dir / "logs" / "containerd.log",
            ),
        )
        wait_until(
            record,
            lambda: _run(["ctr", "--address", str(socket), "version"], check=False).returncode == 0,
            START_TIMEOUT,
        )
        self.say(f"  containerd      {socket}")
        return socket

    def _start_controller_manager(
        self, state: dict[str, Any], binary: Path, data_dir: Path
    ) -> None:
        kubeconfig = self.dir / "kube-controller-manager.kubeconfig"
        pki_dir = data_dir / "pki"
        self._started(
            state,
            spawn(
                "kube-controller-manager",
                [
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
                ],
                self.dir / "logs" / "kube-controller-manager.log",
            ),
        )
        self.say("  kube-controller-manager started")

    def _start_scheduler(
        self, state: dict[str, Any], binary: Path, ca: Path, endpoints: Endpoints
    ) -> None:
        kubeconfig = self.dir / "kube-scheduler.kubeconfig"
        self._started(
            state,
            spawn(
                "kube-scheduler",
                [
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
                    "--v=1",
                ],
                self.dir / "logs" / "kube-scheduler.log",
            ),
        )
        self.say("  kube-scheduler  started")

    def _start_kubelet(
        self,
        state: dict[str, Any],
        binary: Path,
        holder: ProcessRecord,
        socket: Path,
        ca: Path,
        endpoints: Endpoints,
    ) -> None:
        root = self.dir / "kubelet"
        root.mkdir(parents=True, exist_ok=True)
        healthz = free_port()
        config = root / "config.yaml"
        config.write_text(yaml.safe_dump(_kubelet_config(self.dir, socket, ca, healthz)))
        self._started(
            state,
            spawn(
                "kubelet",
                _in_cgroup(
                    _nsenter(
                        holder.pid,
                        [
                            str(binary),
                            "--config",
                            str(config),
                            "--kubeconfig",
                            str(self.dir / "kubelet.kubeconfig"),
                            "--root-dir",
                            str(root / "root"),
                            "--cert-dir",
                            str(root / "pki"),
                            "--hostname-override",
                            NODE_NAME,
                            "--node-ip",
                            BRIDGE_ADDRESS,
                            "--v=1",
                        ],
                    )
                ),
                self.dir / "logs" / "kubelet.log",
            ),
        )
        self.say(f"  kubelet         {BRIDGE_ADDRESS} (healthz 127.0.0.1:{healthz})")

    def _wait_node_ready(self, endpoints: Endpoints) -> None:
        from kubernetes import client, config

        api = client.CoreV1Api(config.new_client_from_config(config_file=endpoints.kubeconfig))

        def ready() -> bool:
            for record in self.processes():
                if not record.alive():
                    raise StackError(
                        f"{record.name} exited while the node was starting:\n"
                        f"{_log_tail(record.log)}"
                    )
            with contextlib.suppress(Exception):
                node = api.read_node(NODE_NAME)
                status = node.status
                conditions = {
                    c.type: c.status for c in (status.conditions if status else None) or ()
                }
                return conditions.get("Ready") == "True"
            return False

        deadline = time.monotonic() + START_TIMEOUT
        while not ready():
            if time.monotonic() > deadline:
                raise StackError(
                    f"node {NODE_NAME} not Ready after {START_TIMEOUT:.0f}s:\n"
                    + _log_tail(str(self.dir / "logs" / "kubelet.log"))
                )
            time.sleep(0.5)

    def _start_local_path_provisioner(
        self, state: dict[str, Any], binary: Path, endpoints: Endpoints
    ) -> None:
        """The default StorageClass `local-path`: each PersistentVolumeClaim (the
        processors' generic ephemeral volumes) gets a directory under the node's state
        dir, made and removed by a helper pod of the Python base image."""
        helper_image = _helper_image()
        # In the stack's data dir, not the node's: the PersistentVolumes live in the
        # stack's etcd, so their directories last as long as it does (make down), and a
        # `make cluster-down && make cluster` finds the pods' volumes where they were.
        volumes = Path(endpoints.data_dir) / "node-volumes"
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
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": LOCAL_PATH_NAMESPACE}},
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": "local-path-provisioner", "namespace": LOCAL_PATH_NAMESPACE},
            },
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "local-path-config", "namespace": LOCAL_PATH_NAMESPACE},
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
        _apply(endpoints.kubeconfig, manifests)
        config_file = self.dir / "local-path-config.json"
        config_file.write_text(manifests[2]["data"]["config.json"])  # type: ignore[index]
        helper_file = self.dir / "local-path-helper-pod.yaml"
        helper_file.write_text(yaml.safe_dump(helper_pod))
        self._started(
            state,
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
                    LOCAL_PATH_NAMESPACE,
                    "--helper-image",
                    helper_image,
                    "--kubeconfig",
                    endpoints.kubeconfig,
                    "--configmap-name",
                    "local-path-config",
                    "--service-account-name",
                    "local-path-provisioner",
                    "--helper-pod-file",
                    str(helper_file),
                ],
                self.dir / "logs" / "local-path-provisioner.log",
            ),
        )
        self.say(f"  local-path      StorageClass local-path (default) in {volumes}")

    def _start_metrics_server(
        self, state: dict[str, Any], binary: Path, endpoints: Endpoints
    ) -> None:
        """metrics.k8s.io for the CPU HPA and `kubectl top`: metrics-server as a host
        process on the bridge address, registered as an APIService whose Service has
        no selector and one endpoint, that address (the apiserver routes to endpoints)."""
        port = free_port()
        record = self._started(
            state,
            spawn(
                "metrics-server",
                [
                    str(binary),
                    "--kubeconfig",
                    endpoints.kubeconfig,
                    "--authentication-kubeconfig",
                    endpoints.kubeconfig,
                    "--authorization-kubeconfig",
                    endpoints.kubeconfig,
                    "--bind-address",
                    BRIDGE_ADDRESS,
                    "--secure-port",
                    str(port),
                    "--cert-dir",
                    str(self.dir / "metrics-server"),
                    "--kubelet-preferred-address-types",
                    "InternalIP",
                    # The kubelet's serving certificate is self-signed (no CSR signer).
                    "--kubelet-insecure-tls",
                    # kubelet serves on a free port, which the Node status names.
                    "--kubelet-use-node-status-port",
                    "--metric-resolution",
                    "15s",
                ],
                self.dir / "logs" / "metrics-server.log",
            ),
        )
        wait_until(record, lambda: _tcp_open(BRIDGE_ADDRESS, port), START_TIMEOUT)
        manifests: list[dict[str, Any]] = [
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "metrics-server", "namespace": "kube-system"},
                "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]},
            },
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": "metrics-server",
                    "namespace": "kube-system",
                    "labels": {"kubernetes.io/service-name": "metrics-server"},
                },
                "addressType": "IPv4",
                "endpoints": [{"addresses": [BRIDGE_ADDRESS], "conditions": {"ready": True}}],
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            },
            {
                "apiVersion": "apiregistration.k8s.io/v1",
                "kind": "APIService",
                "metadata": {"name": "v1beta1.metrics.k8s.io"},
                "spec": {
                    "group": "metrics.k8s.io",
                    "version": "v1beta1",
                    "service": {"name": "metrics-server", "namespace": "kube-system"},
                    # Its serving certificate is self-signed, as in the upstream manifest.
                    "insecureSkipTLSVerify": True,
                    "groupPriorityMinimum": 100,
                    "versionPriority": 100,
                },
            },
        ]
        _apply(endpoints.kubeconfig, manifests)
        self.say(f"  metrics-server  {BRIDGE_ADDRESS}:{port} (metrics.k8s.io)")

    def _start_keda(
        self,
        state: dict[str, Any],
        operator: Path,
        adapter: Path,
        data_dir: Path,
        endpoints: Endpoints,
    ) -> None:
        """KEDA, the chart's autoscaler of the processors: keda-operator (the
        ScaledObject controller, which makes the HPA and asks the NATS scaler for the
        lag) and keda-adapter (external.metrics.k8s.io, which the HPA controller asks
        through the apiserver, and which asks the operator over gRPC) as host processes,
        with KEDA's CRDs and RBAC from the pinned module the binaries were built from.

        Certificates come from the node's CA, not from KEDA's own rotation
        (--enable-cert-rotation): that writes the Secret `kedaorg-certs` and waits for a
        pod's volume to put it into --cert-dir, which a host process has not, and it
        names the certificates after Service DNS names nothing here resolves. The node's
        CA also lets the APIService verify the adapter (caBundle) where metrics-server
        needs insecureSkipTLSVerify."""
        pki_dir = data_dir / "pki"
        source = module_source("keda-operator")
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": keda.NAMESPACE}}
        crds, rbac = keda.crds(source), keda.rbac(source)
        # Recorded before they exist, so a half-made node's `down` deletes them too. Not
        # the CRDs: deleting them deletes every ScaledObject, whose KEDA finalizer no
        # stopped operator would remove (the CRD would hang in Terminating); like the
        # stack's own CRDs they stay, and the next `make cluster` applies them again.
        state["made"]["keda_objects"] = [
            ("", f"apiservice/{keda.EXTERNAL_METRICS_APISERVICE}"),
            *keda.object_names(rbac),
            ("", f"namespace/{keda.NAMESPACE}"),
        ]
        self._write_state(state)
        _wait_namespace_usable(endpoints.kubeconfig, keda.NAMESPACE)
        _apply(endpoints.kubeconfig, [namespace, *crds, *rbac])
        _kubectl(
            endpoints.kubeconfig,
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            *(f"crd/{crd['metadata']['name']}" for crd in crds),
        )
        client_cert, client_key = pki.issue_certificate(pki_dir, "node-keda", keda.USER)
        kubeconfig = self.dir / "keda.kubeconfig"
        _write_kubeconfig(
            kubeconfig, endpoints.apiserver_url, pki_dir / "ca.crt", client_cert, client_key
        )
        # Each --cert-dir holds what KEDA's gRPC TLS reads: ca.crt, tls.crt, tls.key. The
        # gRPC link is mutual TLS, so the adapter's serving pair is a client one too.
        operator_certs = self._keda_cert_dir(pki_dir, "keda-operator", server_names=("127.0.0.1",))
        adapter_certs = self._keda_cert_dir(
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
        record = self._started(
            state,
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
                self.dir / "logs" / "keda-operator.log",
                env=environment,
            ),
        )
        wait_until(record, lambda: _tcp_open("127.0.0.1", grpc_port), START_TIMEOUT)
        adapter_port = free_port()
        record = self._started(
            state,
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
                self.dir / "logs" / "keda-adapter.log",
                env=environment,
            ),
        )
        wait_until(record, lambda: _tcp_open(BRIDGE_ADDRESS, adapter_port), START_TIMEOUT)
        ca_bundle = base64.b64encode((pki_dir / "ca.crt").read_bytes()).decode()
        _apply(
            endpoints.kubeconfig,
            [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "metadata": {"name": keda.ADAPTER_SERVICE, "namespace": keda.NAMESPACE},
                    "spec": {"ports": [{"name": "https", "port": 443, "targetPort": adapter_port}]},
                },
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "name": keda.ADAPTER_SERVICE,
                        "namespace": keda.NAMESPACE,
                        "labels": {"kubernetes.io/service-name": keda.ADAPTER_SERVICE},
                    },
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": [BRIDGE_ADDRESS], "conditions": {"ready": True}}],
                    "ports": [{"name": "https", "port": adapter_port, "protocol": "TCP"}],
                },
                {
                    "apiVersion": "apiregistration.k8s.io/v1",
                    "kind": "APIService",
                    "metadata": {"name": keda.EXTERNAL_METRICS_APISERVICE},
                    "spec": {
                        "group": "external.metrics.k8s.io",
                        "version": "v1beta1",
                        "service": {"name": keda.ADAPTER_SERVICE, "namespace": keda.NAMESPACE},
                        "caBundle": ca_bundle,
                        "groupPriorityMinimum": 100,
                        "versionPriority": 100,
                    },
                },
            ],
        )
        _kubectl(
            endpoints.kubeconfig,
            "wait",
            "--for=condition=Available",
            f"--timeout={START_TIMEOUT:.0f}s",
            f"apiservice/{keda.EXTERNAL_METRICS_APISERVICE}",
        )
        self.say(
            f"  keda            operator gRPC 127.0.0.1:{grpc_port}, adapter "
            f"{BRIDGE_ADDRESS}:{adapter_port} (external.metrics.k8s.io)"
        )

    def _keda_cert_dir(self, pki_dir: Path, name: str, server_names: tuple[str, ...]) -> Path:
        cert, key = pki.issue_certificate(
            pki_dir, f"node-{name}", name, server_names=server_names, client_too=True
        )
        directory = self.dir / name
        directory.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(pki_dir / "ca.crt", directory / "ca.crt")
        shutil.copyfile(cert, directory / "tls.crt")
        shutil.copyfile(key, directory / "tls.key")
        (directory / "tls.key").chmod(0o600)
        return directory

    # -- state ----------------------------------------------------------------------------

    def _started(self, state: dict[str, Any], record: ProcessRecord) -> ProcessRecord:
        state["processes"].append(record.to_json())
        self._write_state(state)
        return record

    def _read_state(self) -> dict[str, Any] | None:
        try:
            loaded: dict[str, Any] = json.loads(self.state_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return loaded

    def _write_state(self, state: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        temporary = self.state_file.with_suffix(".tmp")
        temporary.write_text(json.dumps(state, indent=2))
        temporary.replace(self.state_file)


# -- configuration files ------------------------------------------------------------------


def _containerd_config(base: Path, cni_conf_dir: Path) -> str:
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


def _cni_config(ipam_dir: Path) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": CNI_NETWORK,
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                # Nothing leaves the machine: no masquerade, no forwarding rules.
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(ipam_dir),
                    "ranges": [[{"subnet": str(POD_CIDR), "gateway": BRIDGE_ADDRESS}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
        ],
    }


def _kubelet_config(node_dir: Path, socket: Path, ca: Path, healthz: int) -> dict[str, Any]:
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


def _write_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path) -> None:
    def b64(file: Path) -> str:
        return base64.b64encode(file.read_bytes()).decode()

    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "emulsion",
                        "cluster": {"server": server, "certificate-authority-data": b64(ca)},
                    }
                ],
                "users": [
                    {
                        "name": "component",
                        "user": {
                            "client-certificate-data": b64(cert),
                            "client-key-data": b64(key),
                        },
                    }
                ],
                "contexts": [
                    {"name": "emulsion", "context": {"cluster": "emulsion", "user": "component"}}
                ],
                "current-context": "emulsion",
            }
        )
    )
    path.chmod(0o600)


# -- host plumbing ------------------------------------------------------------------------


def _helper_image() -> str:
    # The Python base (make images) has the sh, mkdir and rm the helper pods run.
    from emulsion_devstack import images

    return images.base_ref()


def _exe(path: str) -> bool:
    return os.access(path, os.X_OK)


def _run(command: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(command), capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise StackError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr}")
    return result


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _tcp_open(host: str, port: int) -> bool:
    import socket

    with socket.create_connection((host, port), timeout=1):
        return True


def _log_tail(path: str, lines: int = 40) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


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


def _cgroup_hierarchies() -> list[Path]:
    """Mount points of the host's cgroup hierarchies (one per v1 controller set)."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        separator = fields.index("-")
        # cgroup2 too: on this hybrid layout it has no controllers, but kubelet and
        # runc still make their groups in it.
        if fields[separator + 1] in ("cgroup", "cgroup2"):
            found.append(Path(fields[4]))
    return found


def _in_cgroup(argv: list[str]) -> list[str]:
    """Wrap `argv` so it starts inside the node's runtime cgroup in every hierarchy:
    whatever it starts (containerd's shims) is found and stopped through the cgroup."""
    targets = " ".join(
        str(h / CGROUP_NAME / "runtime" / "cgroup.procs") for h in _cgroup_hierarchies()
    )
    script = f'for f in {targets}; do echo $$ > "$f"; done; exec "$@"'
    return ["sh", "-c", script, "sh", *argv]


def _nsenter(pid: int, argv: list[str]) -> list[str]:
    return ["nsenter", "--target", str(pid), "--mount", "--", *argv]


def _holder_ready(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep")
    except OSError:
        return False


def _walk_cgroups(root: Path) -> Iterator[Path]:
    """`root` and its descendants, deepest first."""
    if not root.is_dir():
        return
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        yield from _walk_cgroups(child)
    yield root


def _cgroup_pids() -> set[int]:
    pids: set[int] = set()
    for hierarchy in _cgroup_hierarchies():
        for group in _walk_cgroups(hierarchy / CGROUP_NAME):
            with contextlib.suppress(OSError):
                pids.update(int(p) for p in (group / "cgroup.procs").read_text().split())
    return pids


def _kill_cgroup_tree(timeout: float = 30.0) -> None:
    """SIGKILL every process in the node's cgroups until none is left: the containers,
    containerd's shims, and whatever else the node started."""
    deadline = time.monotonic() + timeout
    while pids := _cgroup_pids():
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)
        if time.monotonic() > deadline:
            raise StackError(f"processes {sorted(pids)} outlived SIGKILL in the node's cgroups")
        time.sleep(0.1)


def _remove_cgroups(timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    for hierarchy in _cgroup_hierarchies():
        for group in _walk_cgroups(hierarchy / CGROUP_NAME):
            while True:
                try:
                    group.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    # A process just killed may take a moment to leave the cgroup.
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)


# What the node creates through the API, for `down` to delete (kind/name or -n ns kind/name).
NODE_OBJECTS = (
    ("", "apiservice/v1beta1.metrics.k8s.io"),
    ("kube-system", "service/metrics-server"),
    ("kube-system", "endpointslice/metrics-server"),
    ("", "storageclass/local-path"),
    ("", f"namespace/{LOCAL_PATH_NAMESPACE}"),
    ("", f"node/{NODE_NAME}"),
)


def _kubectl(
    kubeconfig: str, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    command = [str(ensure_binary("kubectl")), "--kubeconfig", kubeconfig, *args]
    result = subprocess.run(command, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise StackError(f"kubectl {' '.join(args)} failed:\n{result.stderr}")
    return result


def _apply(kubeconfig: str, manifests: Sequence[dict[str, Any]]) -> None:
    documents = yaml.safe_dump_all(list(manifests))
    _kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=documents)


def _wait_namespace_usable(kubeconfig: str, name: str, timeout: float = 120.0) -> None:
    """A namespace a previous node deleted (`down` stops the controller-manager first)
    stays Terminating until this node's namespace controller empties it; nothing can be
    created in it until then."""
    deadline = time.monotonic() + timeout
    while True:
        found = _kubectl(
            kubeconfig, "get", "namespace", name, "--ignore-not-found", "-o", "json"
        ).stdout.strip()
        if not found or json.loads(found).get("status", {}).get("phase") != "Terminating":
            return
        if time.monotonic() > deadline:
            raise StackError(f"namespace {name} still Terminating after {timeout:.0f}s")
        time.sleep(1)


def _delete(kubeconfig: str, objects: Sequence[tuple[str, str]]) -> None:
    for namespace, name in objects:
        scope = ["--namespace", namespace] if namespace else []
        with contextlib.suppress(StackError):
            _kubectl(kubeconfig, "delete", *scope, name, "--ignore-not-found", "--wait=false")


IPTABLES = (("iptables", "iptables-save"), ("ip6tables", "ip6tables-save"))
TABLES = ("mangle", "nat", "filter")


def _kube_chains() -> dict[str, list[str]]:
    """The KUBE-* chains of each table, keyed "<command> <table>"."""
    chains = {}
    for command, save in IPTABLES:
        for table in TABLES:
            lines = _run([save, "-t", table], check=False).stdout.splitlines()
            chains[f"{command} {table}"] = sorted(
                line[1:].split()[0] for line in lines if line.startswith(":KUBE-")
            )
    return chains


def _remove_new_kube_chains(before: dict[str, list[str]]) -> None:
    import shlex

    for key, chains in _kube_chains().items():
        command, table = key.split()
        new = set(chains) - set(before.get(key, []))
        if not new:
            continue
        save = dict(IPTABLES)[command]
        for line in _run([save, "-t", table], check=False).stdout.splitlines():
            words = shlex.split(line) if line.startswith("-A ") else []
            if (
                words
                and words[1] not in new
                and "-j" in words
                and words[words.index("-j") + 1] in new
            ):
                _run([command, "-w", "-t", table, "-D", *words[1:]], check=False)
        for chain in new:
            _run([command, "-w", "-t", table, "-F", chain], check=False)
        for chain in new:
            _run([command, "-w", "-t", table, "-X", chain], check=False)


def _bridge_ports() -> list[str]:
    ports = Path(f"/sys/class/net/{BRIDGE}/brif")
    return sorted(p.name for p in ports.iterdir()) if ports.is_dir() else []


def _ensure_nat_chain() -> None:
    if _run(["iptables", "-w", "-t", "nat", "-L", NAT_CHAIN], check=False).returncode != 0:
        _run(["iptables", "-w", "-t", "nat", "-N", NAT_CHAIN])
    jump = ["PREROUTING", "-i", BRIDGE, "-j", NAT_CHAIN]
    if _run(["iptables", "-w", "-t", "nat", "-C", *jump], check=False).returncode != 0:
        _run(["iptables", "-w", "-t", "nat", "-A", *jump])


def _remove_nat_chain() -> None:
    jump = ["PREROUTING", "-i", BRIDGE, "-j", NAT_CHAIN]
    while _run(["iptables", "-w", "-t", "nat", "-D", *jump], check=False).returncode == 0:
        pass
    _run(["iptables", "-w", "-t", "nat", "-F", NAT_CHAIN], check=False)
    _run(["iptables", "-w", "-t", "nat", "-X", NAT_CHAIN], check=False)


def _remove_new_entries(path: Path, before: list[str] | None) -> None:
    """Remove `path` if it did not exist before the node (`before` is None), else the
    entries in it that are new."""
    if before is None:
        shutil.rmtree(path, ignore_errors=True)
        return
    with contextlib.suppress(FileNotFoundError):
        for entry in path.iterdir():
            if entry.name not in before:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)


def _http_ok(url: str, context: ssl.SSLContext | None = None) -> bool:
    with urllib.request.urlopen(url, timeout=2, context=context) as response:  # noqa: S310
        return int(response.status) == 200


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m emulsion_devstack.node up|down|status`: `make cluster`, `make cluster-down`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m emulsion_devstack.node", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--state-dir", type=Path, default=Path(".emulsion"))
    args = parser.parse_args(argv)
    stack = LocalStack(args.state_dir)
    node = Node(stack)
    if args.command == "up":
        try:
            info = node.up()
        except StackError as error:
            print(f"make cluster failed: {error}", file=sys.stderr)
            return 1
        print(f"\nnode {info.name}: pods on {BRIDGE} ({POD_CIDR}); they reach the stack at")
        print(f"  apiserver {info.apiserver}  nats {info.nats}  s3 {info.s3}")
        print("Next: make images && make cluster-install")
        print(f"      source {stack.env_file} && kubectl get nodes,pods -A")
        return 0
    if args.command == "down":
        stopped = node.down()
        print(f"node removed ({', '.join(stopped)})" if stopped else "no node was running")
        return 0
    records = node.processes()
    if not records:
        print("no node")
        return 1
    for record in records:
        print(f"  {record.name:<24} pid {record.pid:<8} {'up' if record.alive() else 'DOWN'}")
    return 0 if node.running() else 1


if __name__ == "__main__":
    sys.exit(main())
