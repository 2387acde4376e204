"""A real single-node cluster on top of the local stack: containerd, kubelet,
kube-controller-manager and kube-scheduler, so the chart runs as pods; with
local-path-provisioner, metrics-server and KEDA (operator and metrics adapter) as host
processes, so its volumes and both of its autoscalers work.

One implementation for `make cluster` / `make cluster-down` and the tests in
tests/cluster. This module starts and stops the node; each concern has a module of its
own. Everything the node makes is named in `<state_dir>/node/node.json` (state.py) and
removed by `down` (node_teardown.py):

* processes, by pid (ProcessRecord), and every process that lands in the node's
  cgroups (containerd's shims, the containers) by the cgroups themselves
  (node_cgroups.py: `/emulsion-node` in each cgroup v1 hierarchy);
* the private mount namespace that containerd and kubelet share (node_namespace.py),
  so the host's kernel parameters never change and every mount they make vanishes
  with it;
* the bridge, its address and the iptables chain EMULSION-NODE (node_network.py: how
  pods reach the stack's servers through the relay);
* containerd's root and state, under `<state_dir>/node/` (node_config.py: containerd's
  and kubelet's configuration and the components' command lines);
* the components' identities from the stack's CA (node_certificates.py), the
  apiserver's flags as a cluster's (node_apiserver.py), and the add-ons' API objects
  (node_local_path.py, node_metrics_server.py, node_keda.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from emulsion_devstack import (
    kubectl,
    node_apiserver,
    node_certificates,
    node_cgroups,
    node_config,
    node_keda,
    node_local_path,
    node_metrics_server,
    node_namespace,
    node_network,
    node_teardown,
)
from emulsion_devstack.binaries import ensure_binary
from emulsion_devstack.endpoints import Endpoints
from emulsion_devstack.node_addons import AddOnHost
from emulsion_devstack.node_certificates import NODE_NAME
from emulsion_devstack.node_network import BRIDGE, BRIDGE_ADDRESS, POD_CIDR
from emulsion_devstack.processes import (
    ProcessRecord,
    StackError,
    command_failed,
    free_port,
    print_status,
    print_stopped,
    run,
    spawn,
    tcp_open,
    wait_until,
)
from emulsion_devstack.services import SERVICES
from emulsion_devstack.stack import LocalStack, add_state_dir
from emulsion_devstack.state import (
    NodeState,
    claim_machine,
    machine_owner,
    node_dir,
    node_state,
    set_argv,
)

START_TIMEOUT = 120.0
NODE_COMMANDS = {
    "containerd": "/usr/bin/containerd",
    "runc": "/usr/sbin/runc",
    "bridge plugin": str(node_network.CNI_BIN_DIR / "bridge"),
    "iptables": "/usr/sbin/iptables",
    "unshare": "/usr/bin/unshare",
    "nsenter": "/usr/bin/nsenter",
}
# What the node creates through the API, for `down` to delete (kind/name or -n ns kind/name).
NODE_OBJECTS = (
    *node_metrics_server.OBJECTS,
    *node_local_path.OBJECTS,
    ("", f"node/{NODE_NAME}"),
)


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
    mounts = sorted(
        line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )
    return {
        "sysctls": node_namespace.host_sysctls(),
        "links": sorted(p.name for p in Path("/sys/class/net").iterdir()),
        "iptables": node_network.iptables_snapshot(),
        "mounts": mounts,
        "cgroups": node_cgroups.existing(),
        "paths": {path: Path(path).exists() for path in node_namespace.HOST_PATHS},
    }


class Node:
    """The node on top of `stack` (which must be running)."""

    def __init__(self, stack: LocalStack, say: Callable[[str], None] = print) -> None:
        self.stack = stack
        self.say = say
        self.dir = node_dir(stack.state_dir)
        self._state = node_state(self.dir)
        self.state_file = self._state.path

    # -- public -------------------------------------------------------------------------

    def up(self) -> NodeInfo:
        info = self.running()
        if info is not None:
            self.say(f"node already running (state in {self.dir})")
            return info
        if self._state.exists():
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
        state = NodeState(self._state, node_namespace.host_sysctls())
        try:
            self._stop_service_processes()
            data_dir = Path(endpoints.data_dir)
            pki_dir = data_dir / "pki"
            certs = node_certificates.issue(pki_dir, self.dir, endpoints.apiserver_url)
            self._reconfigure_apiserver(state, pki_dir, certs)
            node_cgroups.make()
            state.made(cgroups=True)
            self._make_bridge(state)
            info = self._start_relay(state, endpoints)
            holder = self._start_namespace_holder(state)
            socket = self._start_containerd(state, holder)
            info = NodeInfo(**{**info.__dict__, "containerd_socket": str(socket)})
            ca = pki_dir / "ca.crt"
            self._start_controller_manager(state, binaries["kube-controller-manager"], pki_dir)
            self._start_scheduler(state, binaries["kube-scheduler"])
            self._start_kubelet(state, binaries["kubelet"], holder, socket, ca)
            self._wait_node_ready(endpoints)
            host = AddOnHost(state, self.dir, endpoints, self.say, START_TIMEOUT)
            node_local_path.start(host, binaries["local-path-provisioner"])
            node_metrics_server.start(host, binaries["metrics-server"])
            node_keda.start(host, binaries["keda-operator"], binaries["keda-adapter"], data_dir)
        except BaseException:
            self.down()
            raise
        state.finish(info.__dict__)
        self.say(f"node {NODE_NAME} ready in {time.monotonic() - began:.1f}s")
        return info

    def down(self, restore_apiserver: bool = True) -> list[str]:
        """Remove everything `up` made; idempotent, and tolerant of a half-made node.
        `restore_apiserver=False` when the stack is going down anyway."""

        def restore(made: dict[str, Any]) -> None:
            if not restore_apiserver:
                return
            endpoints = self.stack.running()
            if endpoints is not None:
                # The node's API objects: an APIService left pointing at a stopped
                # metrics-server or KEDA adapter would fail every client's discovery.
                keda_objects = [(str(ns), str(name)) for ns, name in made.get("keda_objects", [])]
                kubectl.delete(endpoints.kubeconfig, [*NODE_OBJECTS, *keda_objects])
            if made.get("apiserver_argv"):
                self._restore_apiserver(made["apiserver_argv"])

        return node_teardown.remove(self.dir, before_paths=restore)

    def _claim_machine(self) -> None:
        """One node per machine: the bridge, the pod range and the cgroup names are
        fixed. A node of another state dir that still runs is not ours to replace."""
        owner = machine_owner()
        if owner is not None and owner != self.dir and node_state(owner).exists():
            other = Node(LocalStack(owner.parent), say=self.say)
            if other.running() is not None:
                raise StackError(
                    f"a node of {owner.parent} runs on this machine (one node per machine); "
                    f"remove it first: python -m emulsion_devstack.node down --state-dir "
                    f"{owner.parent}"
                )
            self.say(f"removing what is left of the node of {owner.parent}")
            other.down()
        claim_machine(self.dir)

    def running(self) -> NodeInfo | None:
        state = self._state.read()
        if not state or "info" not in state:
            return None
        records = [ProcessRecord.from_json(raw) for raw in state["processes"]]
        if not records or not all(r.alive() for r in records):
            return None
        return NodeInfo(**state["info"])

    def processes(self) -> list[ProcessRecord]:
        state = self._state.read()
        return [ProcessRecord.from_json(raw) for raw in state.get("processes", [])] if state else []

    def ctr(self, *args: str, input_file: Path | None = None) -> subprocess.CompletedProcess[str]:
        """Run `ctr` in the k8s.io namespace of the node's containerd."""
        socket = self.dir / "containerd" / "containerd.sock"
        command = ["ctr", "--address", str(socket), "--namespace", "k8s.io", *args]
        if input_file is None:
            return run(command)
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

    def _reconfigure_apiserver(
        self, state: NodeState, pki_dir: Path, certs: dict[str, tuple[Path, Path]]
    ) -> None:
        """Restart the stack's apiserver as a cluster's (node_apiserver.py); `down`
        restores the old flags."""
        original = list(self.stack.record("kube-apiserver").argv)
        argv = node_apiserver.cluster_argv(original, pki_dir, certs)
        state.made(apiserver_argv=original)
        self._replace_apiserver_argv(argv)
        self.say("  kube-apiserver  restarted with the node's flags (aggregation, SA tokens)")

    def _restore_apiserver(self, argv: list[str]) -> None:
        with contextlib.suppress(StackError):
            if self.stack.running() is not None or self.stack.processes():
                self._replace_apiserver_argv(argv)

    def _replace_apiserver_argv(self, argv: list[str]) -> None:
        set_argv(self.stack.state_dir, "kube-apiserver", argv)
        self.stack.restart("kube-apiserver", grace=10)

    def _make_bridge(self, state: NodeState) -> None:
        node_network.add_bridge()
        # kubelet adds chains of its own; those the host has now are not ours.
        state.made(bridge=True, kube_chains=node_network.kube_chains())
        node_network.bring_up_bridge()

    def _start_relay(self, state: NodeState, endpoints: Endpoints) -> NodeInfo:
        ports = {
            "apiserver": _port(endpoints.apiserver_url),
            "nats": _port(endpoints.nats_url),
            "nats_monitor": _port(endpoints.nats_monitor_url),
            "s3": _port(endpoints.s3_endpoint_url),
        }
        routes = [f"{BRIDGE_ADDRESS}:{p}=127.0.0.1:{p}" for p in ports.values()]
        record = state.started(
            spawn(
                "relay",
                [sys.executable, "-m", "emulsion_devstack.relay", *routes],
                self.dir / "logs" / "relay.log",
            )
        )
        wait_until(record, lambda: tcp_open(BRIDGE_ADDRESS, ports["apiserver"]), START_TIMEOUT)
        node_network.ensure_nat_chain()
        state.made(nat_chain=True)
        node_network.send_service_ip_to(ports["apiserver"])
        return NodeInfo(
            name=NODE_NAME,
            bridge_address=BRIDGE_ADDRESS,
            containerd_socket="",
            apiserver=f"{BRIDGE_ADDRESS}:{ports['apiserver']}",
            nats=f"{BRIDGE_ADDRESS}:{ports['nats']}",
            nats_monitor=f"{BRIDGE_ADDRESS}:{ports['nats_monitor']}",
            s3=f"{BRIDGE_ADDRESS}:{ports['s3']}",
        )

    def _start_namespace_holder(self, state: NodeState) -> ProcessRecord:
        argv = node_namespace.holder_argv(self.dir / "sysctl", state.host_sysctls)
        state.made(host_paths=node_namespace.host_path_entries())
        record = state.started(
            spawn(
                "node-namespace",
                node_cgroups.in_cgroup(argv),
                self.dir / "logs" / "node-namespace.log",
            )
        )
        wait_until(
            record,
            lambda: node_namespace.holder_ready(record.pid),
            10,
            "holding the namespace",
        )
        return record

    def _start_containerd(self, state: NodeState, holder: ProcessRecord) -> Path:
        base = self.dir / "containerd"
        socket = base / "containerd.sock"
        (self.dir / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
        (self.dir / "cni" / "net.d" / "10-emulsion.conflist").write_text(
            json.dumps(node_network.cni_config(self.dir / "cni" / "ipam"), indent=2)
        )
        config = base / "config.toml"
        base.mkdir(parents=True, exist_ok=True)
        config.write_text(node_config.containerd_config(base, self.dir / "cni" / "net.d"))
        record = state.started(
            spawn(
                "containerd",
                node_cgroups.in_cgroup(
                    node_namespace.nsenter(holder.pid, ["containerd", "--config", str(config)])
                ),
                self.dir / "logs" / "containerd.log",
            )
        )
        wait_until(
            record,
            lambda: run(["ctr", "--address", str(socket), "version"], check=False).returncode == 0,
            START_TIMEOUT,
        )
        self.say(f"  containerd      {socket}")
        return socket

    def _start_controller_manager(self, state: NodeState, binary: Path, pki_dir: Path) -> None:
        kubeconfig = self.dir / "kube-controller-manager.kubeconfig"
        state.started(
            spawn(
                "kube-controller-manager",
                node_config.controller_manager_argv(binary, kubeconfig, pki_dir),
                self.dir / "logs" / "kube-controller-manager.log",
            )
        )
        self.say("  kube-controller-manager started")

    def _start_scheduler(self, state: NodeState, binary: Path) -> None:
        kubeconfig = self.dir / "kube-scheduler.kubeconfig"
        state.started(
            spawn(
                "kube-scheduler",
                node_config.scheduler_argv(binary, kubeconfig),
                self.dir / "logs" / "kube-scheduler.log",
            )
        )
        self.say("  kube-scheduler  started")

    def _start_kubelet(
        self, state: NodeState, binary: Path, holder: ProcessRecord, socket: Path, ca: Path
    ) -> None:
        root = self.dir / "kubelet"
        root.mkdir(parents=True, exist_ok=True)
        healthz = free_port()
        config = root / "config.yaml"
        config.write_text(yaml.safe_dump(node_config.kubelet_config(self.dir, socket, ca, healthz)))
        state.started(
            spawn(
                "kubelet",
                node_cgroups.in_cgroup(
                    node_namespace.nsenter(
                        holder.pid, node_config.kubelet_argv(binary, config, self.dir, root)
                    )
                ),
                self.dir / "logs" / "kubelet.log",
            )
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


def _exe(path: str) -> bool:
    return os.access(path, os.X_OK)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _log_tail(path: str, lines: int = 40) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m emulsion_devstack.node up|down|status`: `make cluster`, `make cluster-down`."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m emulsion_devstack.node", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "status"])
    add_state_dir(parser)
    args = parser.parse_args(argv)
    stack = LocalStack(args.state_dir)
    node = Node(stack)
    if args.command == "up":
        try:
            info = node.up()
        except StackError as error:
            return command_failed("cluster", error)
        print(f"\nnode {info.name}: pods on {BRIDGE} ({POD_CIDR}); they reach the stack at")
        print(f"  apiserver {info.apiserver}  nats {info.nats}  s3 {info.s3}")
        print("Next: make images && make cluster-install")
        print(f"      source {stack.env_file} && kubectl get nodes,pods -A")
        return 0
    if args.command == "down":
        return print_stopped(node.down(), "node removed ({})", "no node was running")
    return print_status(node.processes(), 24, node.running, "no node")


if __name__ == "__main__":
    sys.exit(main())
