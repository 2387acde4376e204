"""The services' one Dockerfile (`ARG SERVICE`): linted (hadolint and our own rules), and
kept honest by running its own `uv sync` line, for every service, on the build context
.dockerignore leaves.

No container engine runs here, so the image itself is never built; what the build stage
installs is, with the host's interpreter instead of the image's.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from emulsion_devstack import images

from .conftest import COMPONENTS, REPO_ROOT

DOCKERFILE = REPO_ROOT / "Dockerfile"


def instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", dockerfile.read_text())
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            found.append((keyword.upper(), rest.strip()))
    return found


def final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    steps = instructions(dockerfile)
    last_from = max(i for i, (keyword, _) in enumerate(steps) if keyword == "FROM")
    return steps[last_from:]


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def build_commands(service: str) -> list[list[str]]:
    """The build stage's `RUN ... && ...` that installs the service, as the shell would
    run it for `--build-arg SERVICE=<service>`: one argument list per command."""
    (run,) = [
        args for keyword, args in instructions(DOCKERFILE) if keyword == "RUN" and "uv sync" in args
    ]
    expanded = run.replace("${SERVICE}", service)
    return [shlex.split(command) for command in expanded.split("&&")]


def command_of(commands: list[list[str]], *prefix: str) -> list[str]:
    (found,) = [c for c in commands if c[: len(prefix)] == list(prefix)]
    return found


@pytest.mark.parametrize("name", COMPONENTS)
def test_dockerfile_rules(name: str) -> None:
    dockerfile = DOCKERFILE
    steps = instructions(dockerfile)
    stages = [args for keyword, args in steps if keyword == "FROM"]
    assert len(stages) >= 2, "multi-stage: build tools stay in the build stage"
    assert len({s.split()[0] for s in stages}) == 1, "both stages on the same base image"
    commands = build_commands(name)
    assert command_of(commands, "test", "-n") == ["test", "-n", name], "SERVICE is required"
    sync = command_of(commands, "uv", "sync")
    assert {"--locked", "--no-dev", "--no-editable"} <= set(sync)
    assert sync[sync.index("--package") + 1] == f"emulsion-{name}"
    link = command_of(commands, "ln", "-s")
    assert link == ["ln", "-s", f"emulsion-{name}", "/opt/emulsion/bin/emulsion-service"]

    final = final_stage(dockerfile)
    assert ("ARG", "SERVICE") in final, "the runtime stage names the service too"
    runs = " ".join(args for keyword, args in final if keyword == "RUN")
    for tool in ("pip install", "uv ", "apt-get install", "gcc", "build-essential"):
        assert tool not in runs, f"{tool!r} in the runtime stage"
    copies = [args for keyword, args in final if keyword == "COPY"]
    assert copies == ["--from=build /opt/emulsion /opt/emulsion"], "only the virtualenv"
    (user,) = [args for keyword, args in final if keyword == "USER"]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "numeric non-root user (runAsNonRoot can check it)"
    (entrypoint,) = [args for keyword, args in final if keyword == "ENTRYPOINT"]
    assert entrypoint == '["emulsion-service"]', "exec form, so the service gets SIGTERM"
    env = " ".join(args for keyword, args in final if keyword == "ENV")
    assert "OTEL_SERVICE_NAME=emulsion-${SERVICE}" in env
    assert "OTEL_EXPORTER" not in dockerfile.read_text(), "exporters are the deployment's choice"


def build_context(target: Path) -> Path:
    """The context Docker itself would send: only .git is skipped unread."""
    return images.build_context(target, skipped=(".git",))


def workspace_members() -> list[Path]:
    root = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    globs = root["tool"]["uv"]["workspace"]["members"]
    return sorted(
        path.relative_to(REPO_ROOT)
        for pattern in globs
        for path in REPO_ROOT.glob(pattern)
        if (path / "pyproject.toml").is_file()
    )


def test_build_context_holds_the_workspace_and_nothing_else(tmp_path: Path) -> None:
    context = build_context(tmp_path / "context")
    members = workspace_members()
    assert {Path("services") / name for name in COMPONENTS} <= set(members)
    # uv checks every member against the lock: a member missing here fails the build.
    for member in members:
        assert (context / member / "pyproject.toml").is_file(), member
    tops = {p.name for p in context.iterdir()}
    assert tops == {"pyproject.toml", "uv.lock"} | {member.parts[0] for member in members}
    # Sources only of what images install; no tests, charts, Dockerfiles or caches.
    for member in members:
        has_sources = (context / member / "src").is_dir()
        assert has_sources == (member.parts[0] in ("libs", "services")), member
    assert not list(context.rglob("__pycache__"))
    assert not list(context.rglob("Dockerfile"))
    # The API image serves the uploader's bundle, built on the host by `make web`.
    bundle = REPO_ROOT / "clients" / "web" / "dist"
    assert (context / "clients" / "web" / "dist").is_dir() == bundle.is_dir()
    assert not (context / "clients" / "web" / "src").exists()


def run_python(python: Path, code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`code` run by the built environment's `python`, away from the sources."""
    return subprocess.run(
        [str(python), "-c", code], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("name", COMPONENTS)
def test_the_dockerfiles_uv_sync_installs_the_service_and_only_it(
    name: str, tmp_path: Path
) -> None:
    context = build_context(tmp_path / "context")
    commands = build_commands(name)
    sync = command_of(commands, "uv", "sync")
    uv = os.environ.get("UV") or shutil.which("uv")
    assert uv, "uv is needed to run the Dockerfile's uv sync"
    environment = tmp_path / "venv"
    command = [uv, *sync[1:], "--python", sys.executable]
    result = subprocess.run(
        command,
        cwd=context,
        env={
            **os.environ,
            "UV_PROJECT_ENVIRONMENT": str(environment),
            "UV_LINK_MODE": "copy",
            "UV_PYTHON_DOWNLOADS": "never",
            "VIRTUAL_ENV": "",
        },
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # The entrypoint's link points at the service's console script, next to it.
    _, _, target, link = command_of(commands, "ln", "-s")
    assert Path(link).parent == Path("/opt/emulsion/bin")
    script = environment / "bin" / target
    assert script.is_file(), f"no console script {target} in the image"
    python = environment / "bin" / "python"
    probe = run_python(
        python,
        "import importlib.util as u, emulsion_contracts, emulsion_runtime, "
        f"emulsion_{name} as s; print(s.__file__); "
        f"print(bool(u.find_spec('emulsion_{name}.__main__')))",
        cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    module_file, has_main = probe.stdout.split()
    # Installed as a wheel in the environment, not an editable link back to the sources.
    assert module_file.startswith(str(environment)), module_file
    assert has_main == "True", f"python -m emulsion_{name} would not run"
    if name == "processor":
        # The processor reads HEIC (pillow-heif bundles libheif and libde265) and AVIF
        # (Pillow's wheel bundles libavif with dav1d): no system library in the image.
        decoders = run_python(
            python,
            "import emulsion_processor.heif; from PIL import Image, features; "
            "assert features.check('avif'); assert 'HEIF' in Image.OPEN",
            cwd=tmp_path,
        )
        assert decoders.returncode == 0, decoders.stderr
    installed = {
        p.name.split("-")[0].lower() for p in environment.glob("lib/*/site-packages/*.dist-info")
    }
    others = {f"emulsion_{o}" for o in COMPONENTS if o != name}
    for unwanted in {"pytest", "ruff", "mypy", "emulsion_devstack", "emulsion_cli", *others}:
        assert unwanted not in installed, f"{unwanted} would be in the emulsion-{name} image"
