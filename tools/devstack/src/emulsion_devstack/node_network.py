"""The real node's network: the bridge `emulsion0` the pods live on, the CNI bridge
plugin's configuration, and the iptables chain EMULSION-NODE (nat) that sends the
kubernetes Service's ClusterIP to the relay; and removing all of it, with the chains
kubelet adds, again.

Pods live on the bridge (10.244.0.0/24, the bridge plugin with host-local IPAM), reached
from the host directly; nothing is routed or masqueraded beyond the machine. The stack's
servers listen on 127.0.0.1 only, so a relay process (relay.py) listens on the bridge
address with the same ports, and the kubernetes Service's ClusterIP (10.0.0.1:443) is
DNAT'ed to the relay for in-cluster clients.
"""

from __future__ import annotations

import ipaddress
import shlex
from pathlib import Path
from typing import Any

from emulsion_devstack.processes import run

BRIDGE = "emulsion0"
POD_CIDR = ipaddress.ip_network("10.244.0.0/24")
BRIDGE_ADDRESS = str(next(POD_CIDR.hosts()))  # 10.244.0.1
SERVICE_IP = "10.0.0.1"  # the kubernetes Service in the stack's 10.0.0.0/24
NAT_CHAIN = "EMULSION-NODE"
CNI_NETWORK = "emulsion-node"
CNI_BIN_DIR = Path("/usr/lib/cni")
IPTABLES = (("iptables", "iptables-save"), ("ip6tables", "ip6tables-save"))
TABLES = ("mangle", "nat", "filter")


def add_bridge() -> None:
    # Made here, not by the bridge plugin at the first pod, so the relay can listen
    # on its address before any pod exists. The plugin finds it and keeps it.
    if not Path(f"/sys/class/net/{BRIDGE}").exists():
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])


def bring_up_bridge() -> None:
    address = f"{BRIDGE_ADDRESS}/{POD_CIDR.prefixlen}"
    if address not in run(["ip", "-o", "addr", "show", "dev", BRIDGE]).stdout:
        run(["ip", "addr", "add", address, "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def remove_bridge() -> None:
    # The pods' veths first: a pod's network namespace may outlive its processes
    # for a while, and with it the host end of its veth, which deleting the
    # bridge would only detach.
    for veth in _bridge_ports():
        run(["ip", "link", "delete", veth], check=False)
    run(["ip", "link", "delete", BRIDGE], check=False)


def _bridge_ports() -> list[str]:
    ports = Path(f"/sys/class/net/{BRIDGE}/brif")
    return sorted(p.name for p in ports.iterdir()) if ports.is_dir() else []


def cni_config(ipam_dir: Path) -> dict[str, Any]:
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


def ensure_nat_chain() -> None:
    if run(["iptables", "-w", "-t", "nat", "-L", NAT_CHAIN], check=False).returncode != 0:
        run(["iptables", "-w", "-t", "nat", "-N", NAT_CHAIN])
    jump = ["PREROUTING", "-i", BRIDGE, "-j", NAT_CHAIN]
    if run(["iptables", "-w", "-t", "nat", "-C", *jump], check=False).returncode != 0:
        run(["iptables", "-w", "-t", "nat", "-A", *jump])


def send_service_ip_to(port: int) -> None:
    """In-cluster clients dial the kubernetes Service (10.0.0.1:443); without kube-proxy,
    one DNAT rule for traffic from the bridge sends it to the relay's `port`."""
    run(
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
            f"{BRIDGE_ADDRESS}:{port}",
        ]
    )


def remove_nat_chain() -> None:
    jump = ["PREROUTING", "-i", BRIDGE, "-j", NAT_CHAIN]
    while run(["iptables", "-w", "-t", "nat", "-D", *jump], check=False).returncode == 0:
        pass
    run(["iptables", "-w", "-t", "nat", "-F", NAT_CHAIN], check=False)
    run(["iptables", "-w", "-t", "nat", "-X", NAT_CHAIN], check=False)


def kube_chains() -> dict[str, list[str]]:
    """The KUBE-* chains of each table, keyed "<command> <table>": kubelet adds chains of
    its own (KUBE-FIREWALL with jumps from INPUT and OUTPUT, KUBE-IPTABLES-HINT,
    canaries); those the host has before the node are not the node's."""
    chains = {}
    for command, save in IPTABLES:
        for table in TABLES:
            lines = run([save, "-t", table], check=False).stdout.splitlines()
            chains[f"{command} {table}"] = sorted(
                line[1:].split()[0] for line in lines if line.startswith(":KUBE-")
            )
    return chains


def remove_new_kube_chains(before: dict[str, list[str]]) -> None:
    """kubelet's chains and the jumps to them, where the host had none `before`."""
    for key, chains in kube_chains().items():
        command, table = key.split()
        new = set(chains) - set(before.get(key, []))
        if not new:
            continue
        save = dict(IPTABLES)[command]
        for line in run([save, "-t", table], check=False).stdout.splitlines():
            words = shlex.split(line) if line.startswith("-A ") else []
            if (
                words
                and words[1] not in new
                and "-j" in words
                and words[words.index("-j") + 1] in new
            ):
                run([command, "-w", "-t", table, "-D", *words[1:]], check=False)
        for chain in new:
            run([command, "-w", "-t", table, "-F", chain], check=False)
        for chain in new:
            run([command, "-w", "-t", table, "-X", chain], check=False)


def iptables_snapshot() -> dict[str, list[str]]:
    """Every table's chains (by name) and rules, for comparing the host before and after."""
    return {
        f"{command} {table}": sorted(
            # Chains (":NAME POLICY [counters]") by name; rules as they are.
            line.split()[0] if line.startswith(":") else line
            for line in run([command, "-t", table], check=False).stdout.splitlines()
            if not line.startswith("#")
        )
        for command in ("iptables-save", "ip6tables-save")
        for table in ("mangle", "nat", "filter")
    }


def aggregated_api(
    service: str, namespace: str, port: int, api: dict[str, Any]
) -> list[dict[str, Any]]:
    """An aggregated API (metrics-server, KEDA's adapter) served by a host process on
    the bridge address at `port`: a Service with no selector, its one endpoint (that
    address), and the APIService (`api`: group, version and how the apiserver trusts
    it) that points at it."""
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": service, "namespace": namespace},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": port}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": service,
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": service},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [BRIDGE_ADDRESS], "conditions": {"ready": True}}],
            "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
        },
        {
            "apiVersion": "apiregistration.k8s.io/v1",
            "kind": "APIService",
            "metadata": {"name": f"{api['version']}.{api['group']}"},
            "spec": {
                **api,
                "service": {"name": service, "namespace": namespace},
                "groupPriorityMinimum": 100,
                "versionPriority": 100,
            },
        },
    ]
