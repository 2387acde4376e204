"""The rule `make lint` keeps against import cycles (pyproject.toml, [tool.importlinter]):
it covers every package of ours, and a circle, even one made of a type-only import,
breaks it with the modules named."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
IMPORTLINTER: dict[str, Any] = PYPROJECT["tool"]["importlinter"]


def cycle_rule() -> dict[str, Any]:
    rules: list[dict[str, Any]] = [
        c for c in IMPORTLINTER["contracts"] if c["type"] == "acyclic_siblings"
    ]
    (rule,) = rules
    return rule


def our_packages() -> set[str]:
    """The import package of every workspace member (`<member>/src/<package>`)."""
    return {
        package.parent.name
        for pattern in PYPROJECT["tool"]["uv"]["workspace"]["members"]
        for member in REPO_ROOT.glob(pattern)
        for package in member.glob("src/*/__init__.py")
    }


def test_the_cycle_rule_covers_every_package_of_ours() -> None:
    assert "emulsion_devstack" in our_packages()
    assert our_packages() <= set(IMPORTLINTER["root_packages"])
    assert set(cycle_rule()["ancestors"]) == set(IMPORTLINTER["root_packages"])


# Integration, not `make unit`: runs lint-imports as a process (see tests/conftest.py).
@pytest.mark.integration
def test_a_circle_breaks_the_rule_and_is_named(tmp_path: Path) -> None:
    package = tmp_path / "circled"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "engine.py").write_text("from circled import wheels\n")
    (package / "wheels.py").write_text(
        "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from circled import engine\n"
    )
    (package / "apart.py").write_text("from circled import engine\n")
    # The rule as pyproject.toml has it, over this package alone.
    (tmp_path / "pyproject.toml").write_text(
        '[tool.importlinter]\nroot_packages = ["circled"]\n\n'
        "[[tool.importlinter.contracts]]\n"
        f"name = {json.dumps(cycle_rule()['name'])}\n"
        f"type = {json.dumps(cycle_rule()['type'])}\n"
        'ancestors = ["circled"]\n'
    )
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0, result.stdout
    assert "No cycles are allowed in circled" in result.stdout
    named = {line.strip() for line in result.stdout.splitlines() if line.strip().startswith("- .")}
    assert named in ({"- .engine -> .wheels (1 import)"}, {"- .wheels -> .engine (1 import)"})
