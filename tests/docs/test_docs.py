"""The docs live in the repository, link only to what exists, and match the code."""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import ModuleType

import pytest

from tests import tools

REPO_ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
# The README keeps a newcomer's first screens and links to these for the rest.
DOCUMENTS = (
    "architecture",
    "api-walkthrough",
    "building-on-the-api",
    "images",
    "ingestjob",
    "configuration",
    "local-stack",
    "real-node",
    "testing",
    "performance",
    "capacity",
    "troubleshooting",
)


def load_tool() -> ModuleType:
    return tools.load_tool("config_reference")


# Integration, not `make unit`: runs the generating tool as a process (see tests/conftest.py).
@pytest.mark.integration
def test_configuration_reference_is_generated_from_the_settings() -> None:
    result = tools.check("config_reference")
    assert result.returncode == 0, result.stderr


def test_every_setting_of_every_component_is_listed_and_described() -> None:
    tool = load_tool()
    text = (REPO_ROOT / "docs" / "configuration.md").read_text()
    for _, target in (*tool.PARTS, *tool.COMPONENTS):
        cls = tool.load(target)
        for name, info, owner in tool.own_fields(cls):
            names = tool.variables(info)
            assert names, f"{target}.{name} has no environment variable"
            assert f"`{names[0]}`" in text, names[0]
            assert info.description or tool.comment_above(owner, name), (
                f"{target}.{name} ({names[0]}) has no comment saying what it does"
            )
    # Every field of every service is owned by exactly one documented class.
    documented = {tool.load(t) for _, t in (*tool.PARTS, *tool.COMPONENTS)}
    for _, target in tool.COMPONENTS:
        cls = tool.load(target)
        for name in cls.model_fields:
            owners = [c for c in cls.__mro__ if name in getattr(c, "__annotations__", {})]
            assert owners and owners[0] in documented, f"{target}.{name}"


def markdown_files() -> list[Path]:
    return [REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]


def test_docs_exist_and_their_relative_links_resolve() -> None:
    for name in DOCUMENTS:
        assert (REPO_ROOT / "docs" / f"{name}.md").is_file(), name
    for document in markdown_files():
        for target in LINK.findall(document.read_text()):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            path = (document.parent / target.split("#", 1)[0]).resolve()
            assert path.exists(), f"{document.name}: {target} does not exist"
            assert path.is_relative_to(REPO_ROOT), f"{document.name}: {target} leaves the repo"


def test_readme_links_the_architecture_document() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    assert "(docs/architecture.md)" in readme
    assert "../shared" not in readme


def test_readme_links_every_document() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    for name in DOCUMENTS:
        assert f"(docs/{name}.md)" in readme, name


def test_architecture_describes_the_key_layout_as_keys_py_builds_it() -> None:
    from emulsion_contracts import keys

    text = (REPO_ROOT / "docs" / "architecture.md").read_text()
    name = "Café à la plage.jpg"
    assert f"`{keys.asset_segment(name)}`" in text
    for prefix in keys.PREFIXES:
        assert prefix in text
    # Uploads name their collection, and the claim marker sits beside them.
    upload = keys.staging_key("c", keys.new_ulid(), "a.jpg")
    documented = "staging/<collection>/<upload-id>/<safe-name>"
    assert upload.split("/")[:2] == ["staging", "c"] and documented in text
    assert f"staging/<collection>/<upload-id>/{keys.CLAIM_NAME}" in text


CITATION = re.compile(r"DESIGN\.md|\b[Ii]ssues? ?#?\d+")
SOURCE_SUFFIXES = {".py", ".md", ".yaml", ".yml", ".tpl", ".toml", ".sh", ".mjs", ".txt"}
NOT_OURS = {".venv", "node_modules", "dist", ".git", ".pytest_cache", ".mypy_cache", ".emulsion"}


def test_nothing_cites_a_design_file_or_an_issue_number() -> None:
    """A reader has neither: each reference says what it means, or links docs/."""
    cited = []
    for folder, folders, files in os.walk(REPO_ROOT):
        folders[:] = [name for name in folders if name not in NOT_OURS]
        for name in files:
            path = Path(folder) / name
            if path.suffix not in SOURCE_SUFFIXES and name not in {"Makefile", "Dockerfile"}:
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
                if CITATION.search(line):
                    cited.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert not cited, "\n".join(cited)
