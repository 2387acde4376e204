"""The node's images, built here (no registry is reachable) and cached per user.

* the Python base: a `debootstrap --variant=minbase` root filesystem of Debian's
  python3, imported into podman;
* the four services from the root Dockerfile (`--build-arg SERVICE=...`) on that base.
  Inside a build no registry is reachable either, so the build's `uv sync` runs
  offline: /offline (bind-mounted into the build) holds the host's uv and a uv cache
  that the host's own `uv sync` of each service filled, for the base's interpreter;
* the pause image, from pause.c in the pinned kubernetes module.

podman's storage lives under the per-user cache (~/.cache/emulsion/containers), so a
second `make images` finds every image by its tag: a hash of the lock, the sources, the
Dockerfile and the base. `load` imports them into the node's containerd.

CLI: ``python -m emulsion_devstack.images [build|load] [--state-dir DIR]``
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from emulsion_devstack.binaries import KUBERNETES_VERSION, cache_dir
from emulsion_devstack.processes import StackError

REPO_ROOT = Path(__file__).resolve().parents[4]
SERVICES = ("api", "controller", "processor", "janitor")
REGISTRY = "localhost/emulsion"
BASE_SUITE = "bookworm"
# python-is-python3: the Dockerfile says `python`, as the official images do.
BASE_PACKAGES = ("python3", "python-is-python3")
DEBIAN_MIRROR = "http://deb.debian.org/debian"
PAUSE_VERSION = "3.10"
PAUSE_IMAGE = f"{REGISTRY}/pause:{PAUSE_VERSION}"
Say = Callable[[str], None]


@dataclass(frozen=True)
class Images:
    """What `build` made: the service images' repository prefix and their common tag."""

    registry: str
    tag: str
    base: str

    def ref(self, service: str) -> str:
        return f"{self.registry}/emulsion-{service}:{self.tag}"

    def all_refs(self) -> list[str]:
        return [*(self.ref(s) for s in SERVICES), PAUSE_IMAGE]


def images_dir() -> Path:
    return cache_dir().parent / "images"


def podman(*args: str, check: bool = True, quiet: bool = False) -> subprocess.CompletedProcess[str]:
    storage = cache_dir().parent / "containers"
    command = [
        "podman",
        "--root",
        str(storage / "storage"),
        "--runroot",
        str(storage / "run"),
        # No systemd here; cgroup v1 only, where crun refuses the layout and runc works.
        "--cgroup-manager",
        "cgroupfs",
        "--events-backend",
        "none",
        "--runtime",
        "runc",
        *args,
    ]
    result = subprocess.run(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if not quiet else subprocess.PIPE,
        text=True,
        check=False,
    )
    if check and result.returncode != 0:
        tail = "\n".join(result.stdout.splitlines()[-40:])
        raise StackError(f"podman {' '.join(args[:3])} ... failed ({result.returncode}):\n{tail}")
    return result


def image_exists(ref: str) -> bool:
    return podman("image", "exists", ref, check=False, quiet=True).returncode == 0


# -- the base -----------------------------------------------------------------------------


def base_ref() -> str:
    key = _digest([BASE_SUITE, *BASE_PACKAGES, DEBIAN_MIRROR])
    return f"{REGISTRY}/python-base:{BASE_SUITE}-{key}"


def ensure_base(say: Say = print) -> str:
    ref = base_ref()
    if image_exists(ref):
        return ref
    started = time.monotonic()
    say(f"debootstrap {BASE_SUITE} minbase + {', '.join(BASE_PACKAGES)} (first run only, ~3 min)")
    work = images_dir() / "work"
    work.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=work) as temporary:
        root = Path(temporary) / "root"
        result = subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                BASE_SUITE,
                str(root),
                DEBIAN_MIRROR,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            log = root / "debootstrap" / "debootstrap.log"
            detail = log.read_text()[-3000:] if log.exists() else result.stdout[-3000:]
            raise StackError(f"debootstrap failed ({result.returncode}):\n{detail}")
        # What an image never needs: the downloaded packages and the package lists.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for path in (root / leftover).glob("*"):
                if path.is_file():
                    path.unlink()
        tarball = Path(temporary) / "root.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(tarball), "."], check=True)
        podman("import", "--change", 'CMD ["python3"]', str(tarball), ref)
    say(f"  base {ref} in {time.monotonic() - started:.0f}s")
    return ref


# -- the pause image ----------------------------------------------------------------------


def ensure_pause(say: Say = print) -> str:
    if image_exists(PAUSE_IMAGE):
        return PAUSE_IMAGE
    source = _kubernetes_module_dir() / "build" / "pause" / "linux" / "pause.c"
    with tempfile.TemporaryDirectory() as temporary:
        root = Path(temporary) / "root"
        root.mkdir()
        subprocess.run(
            [
                "gcc",
                "-Os",
                "-Wall",
                "-Werror",
                "-static",
                f"-DVERSION=v{PAUSE_VERSION}-emulsion",
                "-o",
                str(root / "pause"),
                str(source),
            ],
            check=True,
        )
        tarball = Path(temporary) / "pause.tar"
        subprocess.run(["tar", "-C", str(root), "-cf", str(tarball), "pause"], check=True)
        podman(
            "import",
            "--change",
            'ENTRYPOINT ["/pause"]',
            "--change",
            "USER 65535:65535",
            str(tarball),
            PAUSE_IMAGE,
        )
    say(f"  pause {PAUSE_IMAGE} from {source.name}")
    return PAUSE_IMAGE


def _kubernetes_module_dir() -> Path:
    wrapper = REPO_ROOT / "tools" / "go" / "kubernetes"
    result = subprocess.run(
        ["go", "mod", "download", "-json", f"k8s.io/kubernetes@{KUBERNETES_VERSION}"],
        cwd=wrapper,
        env={**os.environ, "GOWORK": "off"},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise StackError(f"go mod download k8s.io/kubernetes failed:\n{result.stderr}")
    import json

    return Path(json.loads(result.stdout)["Dir"])


# -- the service images -------------------------------------------------------------------


def build(say: Say = print) -> Images:
    """Build (or find) the base, pause and the four service images."""
    started = time.monotonic()
    base = ensure_base(say)
    ensure_pause(say)
    web = REPO_ROOT / "clients" / "web" / "dist" / "index.html"
    if not web.is_file():
        raise StackError("clients/web/dist is missing: run make web first (the API serves it)")
    with tempfile.TemporaryDirectory(dir=_work_dir()) as temporary:
        context = build_context(Path(temporary) / "context")
        tag = _digest([base, (REPO_ROOT / "Dockerfile").read_text(), _tree_digest(context)])
        images = Images(registry=REGISTRY, tag=tag, base=base)
        missing = [s for s in SERVICES if not image_exists(images.ref(s))]
        if missing:
            offline = _offline_dir(missing, say)
            for service in missing:
                began = time.monotonic()
                podman(
                    "build",
                    "--file",
                    str(REPO_ROOT / "Dockerfile"),
                    "--build-arg",
                    f"SERVICE={service}",
                    "--build-arg",
                    f"PYTHON_IMAGE={base}",
                    "--volume",
                    f"{offline}:/offline",
                    # chroot isolation: no runtime, cgroups or network namespace to set
                    # up. It shares the host's network, but nothing in the build
                    # fetches: uv runs offline on /offline.
                    "--isolation",
                    "chroot",
                    "--pull=never",
                    "--layers",
                    "--tag",
                    images.ref(service),
                    str(context),
                )
                say(f"  {images.ref(service)} in {time.monotonic() - began:.0f}s")
    say(f"images ready in {time.monotonic() - started:.0f}s (tag {images.tag})")
    return images


def _work_dir() -> Path:
    work = images_dir() / "work"
    work.mkdir(parents=True, exist_ok=True)
    return work


def _offline_dir(services: Sequence[str], say: Say) -> Path:
    """/offline for the builds: uv itself and a uv cache holding every wheel the
    services' `uv sync --locked` needs for the base's python3 (Debian's, like the
    host's /usr/bin/python3). Filled by the host's uv, which reaches the registry."""
    offline = images_dir() / "offline"
    cache = offline / "uv-cache"
    cache.mkdir(parents=True, exist_ok=True)
    uv = _uv()
    shutil.copy2(uv, offline / "uv")
    lock = _digest([(REPO_ROOT / "uv.lock").read_text()])
    for service in services:
        filled = cache / f".filled-{lock}-{service}"
        if filled.exists():
            continue
        with tempfile.TemporaryDirectory(dir=_work_dir()) as environment:
            result = subprocess.run(
                [
                    str(uv),
                    "sync",
                    "--locked",
                    "--no-dev",
                    "--no-editable",
                    "--package",
                    f"emulsion-{service}",
                    "--python",
                    "/usr/bin/python3",
                ],
                cwd=REPO_ROOT,
                env={
                    **os.environ,
                    "UV_CACHE_DIR": str(cache),
                    "UV_PROJECT_ENVIRONMENT": str(Path(environment) / "venv"),
                    "UV_PYTHON_DOWNLOADS": "never",
                    "UV_LINK_MODE": "copy",
                    "VIRTUAL_ENV": "",
                },
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise StackError(
                    f"uv sync for the {service} image's cache failed:\n{result.stderr}"
                )
        filled.touch()
    say(f"  offline uv cache for {', '.join(services)} in {cache}")
    return offline


def _uv() -> Path:
    for candidate in (os.environ.get("UV"), shutil.which("uv")):
        if candidate and Path(candidate).is_file():
            return Path(candidate).resolve()
    for path in sorted((cache_dir().parent).glob("uv-*/bin/uv")):
        return path.resolve()
    raise StackError("uv not found: run make setup")


def dockerignore_patterns() -> list[tuple[bool, str]]:
    patterns = []
    for line in (REPO_ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            patterns.append((negated, line.lstrip("!").rstrip("/")))
    return patterns


def ignored(relative: str, patterns: list[tuple[bool, str]]) -> bool:
    # Docker's rule: the last matching pattern wins; a pattern matching a directory
    # matches everything under it. fnmatch's `*` crosses '/', which covers `**/`.
    candidates = [relative] + [str(p) for p in Path(relative).parents if str(p) != "."]
    verdict = False
    for negated, pattern in patterns:
        anywhere = pattern.startswith("**/")
        bare = pattern.removeprefix("**/")
        if any(
            fnmatch.fnmatchcase(c, pattern)
            or (anywhere and fnmatch.fnmatchcase(Path(c).name, bare))
            for c in candidates
        ):
            verdict = not negated
    return verdict


def settled(relative: str, patterns: list[tuple[bool, str]]) -> bool:
    """True when `relative` and everything under it is ignored whatever lies inside: a
    pattern after the last `!` exception matches it, so no exception can bring a file back."""
    last_exception = max((i for i, (negated, _) in enumerate(patterns) if negated), default=-1)
    return ignored(relative, patterns[last_exception + 1 :])


def build_context(
    target: Path, skipped: Sequence[str] = (".git", ".emulsion", "node_modules")
) -> Path:
    """The build context .dockerignore leaves, copied out: podman 4.3 mishandles
    negations like `!**/pyproject.toml`, so the copy goes to podman with no ignore file.
    Directories named in `skipped` are not walked; others are pruned only where Docker
    would ignore every file below anyway (.venv, caches)."""
    patterns = dockerignore_patterns()
    for directory, subdirectories, files in os.walk(REPO_ROOT):
        here = Path(directory)
        subdirectories[:] = [
            d
            for d in subdirectories
            if d not in skipped
            and not settled((here / d).relative_to(REPO_ROOT).as_posix(), patterns)
        ]
        for name in files:
            relative = (here / name).relative_to(REPO_ROOT).as_posix()
            if not ignored(relative, patterns):
                destination = target / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(here / name, destination)
    return target


def _tree_digest(root: Path) -> str:
    # The context holds no sources of tools/devstack (only its pyproject.toml), so
    # editing the tools that build the images rebuilds nothing.
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _digest(parts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode() + b"\0")
    return digest.hexdigest()[:12]


# -- into the node --------------------------------------------------------------------------


def load(images: Images, containerd_socket: Path, say: Say = print) -> None:
    """Import the images the node's containerd does not have yet."""
    ctr = ["ctr", "--address", str(containerd_socket), "--namespace", "k8s.io"]
    listed = subprocess.run(
        [*ctr, "images", "ls", "-q"], capture_output=True, text=True, check=True
    )
    present = set(listed.stdout.split())
    wanted = [ref for ref in [*images.all_refs(), images.base] if ref not in present]
    if not wanted:
        return
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=_work_dir()) as temporary:
        archive = Path(temporary) / "images.tar"
        podman(
            "save",
            "--multi-image-archive",
            "--format",
            "docker-archive",
            "--output",
            str(archive),
            *wanted,
        )
        subprocess.run(
            [*ctr, "images", "import", "--no-unpack", str(archive)],
            capture_output=True,
            text=True,
            check=True,
        )
    say(f"  loaded {len(wanted)} images into the node in {time.monotonic() - started:.0f}s")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulsion_devstack.images", description=__doc__)
    parser.add_argument("command", choices=["build", "load"], nargs="?", default="load")
    parser.add_argument("--state-dir", type=Path, default=Path(".emulsion"))
    args = parser.parse_args(argv)
    try:
        images = build()
        (args.state_dir).mkdir(parents=True, exist_ok=True)
        (args.state_dir / "images").write_text(f"{images.registry}\n{images.tag}\n")
        if args.command == "load":
            socket = args.state_dir.resolve() / "node" / "containerd" / "containerd.sock"
            if not socket.exists():
                print("no node is running (make cluster); images built, not loaded")
                return 0
            load(images, socket)
    except (StackError, subprocess.CalledProcessError) as error:
        print(f"make images failed: {error}", file=sys.stderr)
        return 1
    print(f"images: {images.registry}/emulsion-<service>:{images.tag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
