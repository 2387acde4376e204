"""The real node's private mount namespace, which containerd and kubelet share, held by
one `sleep` process: kubelet's and the CNI plugins' writes of host kernel parameters land
on files bind-mounted over /proc/sys inside it, so the host's values never change, and
every mount containerd and kubelet make (overlays, tmpfs volumes, netns) vanishes with it.
Also the host paths the runtime writes outside its own root, and what `down` removes of
them."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

HOST_PATHS = ("/run/containerd", "/var/run/netns", "/var/lib/cni")
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


def host_sysctls() -> dict[str, str]:
    """The host's values of the kernel parameters the node keeps private."""
    values = {}
    for name in PRIVATE_SYSCTLS:
        path = Path("/proc/sys") / name
        with contextlib.suppress(OSError):
            values[name] = path.read_text().strip()
    return values


def holder_argv(sysctl_dir: Path, sysctls: dict[str, str]) -> list[str]:
    """The holder's command: a private copy of each of `sysctls` bind-mounted over its
    /proc/sys file in a new mount namespace, then a sleep that keeps the namespace."""
    binds = []
    for name, value in sysctls.items():
        private = sysctl_dir / name.replace("/", ".")
        private.parent.mkdir(parents=True, exist_ok=True)
        private.write_text(value + "\n")
        binds.append(f"mount --bind {private} /proc/sys/{name}")
    script = " && ".join([*binds, f"exec sleep {365 * 24 * 3600}"])
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script]


def holder_ready(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"sleep")
    except OSError:
        return False


def nsenter(pid: int, argv: list[str]) -> list[str]:
    """`argv` in the mount namespace the holder `pid` keeps."""
    return ["nsenter", "--target", str(pid), "--mount", "--", *argv]


def host_path_entries() -> dict[str, list[str] | None]:
    """Paths the runtime makes on the host outside its configured root (containerd
    1.6's shim sockets, the netns files, libcni's cache): what is in them now is not
    the node's; whatever `down` finds beyond that is."""
    return {
        path: sorted(p.name for p in Path(path).iterdir()) if Path(path).is_dir() else None
        for path in HOST_PATHS
    }


def remove_new_entries(path: Path, before: list[str] | None) -> None:
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
