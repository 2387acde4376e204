"""The chart README's values table is made from values.yaml and never drifts from it."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import yaml

from tests import tools

from .conftest import CHART


def load_tool() -> ModuleType:
    return tools.load_tool("chart_values_table")


def test_readme_values_table_is_generated_from_values_yaml() -> None:
    result = tools.check("chart_values_table")
    assert result.returncode == 0, result.stderr


def test_check_fails_on_a_stale_table(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    chart.mkdir()
    values = (CHART / "values.yaml").read_text()
    (chart / "values.yaml").write_text(values.replace("logLevel: INFO", "logLevel: DEBUG"))
    (chart / "README.md").write_text((CHART / "README.md").read_text())
    tool = load_tool()
    assert tool.main(["--check", "--chart", str(chart)]) == 1
    assert tool.main(["--chart", str(chart)]) == 0
    assert '| `logLevel` | string | `"DEBUG"` |' in (chart / "README.md").read_text()
    assert tool.main(["--check", "--chart", str(chart)]) == 0


def test_every_top_level_value_and_every_component_key_is_in_the_table() -> None:
    tool = load_tool()
    keys = [row.key for row in tool.rows(CHART / "values.yaml")]
    assert len(keys) == len(set(keys))
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for top in values:
        assert any(key == top or key.startswith(f"{top}.") for key in keys), top

    def leaves(prefix: str, node: object) -> list[str]:
        if isinstance(node, dict) and node:
            return [leaf for k, v in node.items() for leaf in leaves(f"{prefix}.{k}", v)]
        return [prefix]

    # Each key of the component explained in full is documented itself or by a parent.
    for leaf in leaves("components.api", values["components"]["api"]):
        assert any(leaf == key or leaf.startswith(f"{key}.") for key in keys), leaf


def test_descriptions_span_their_continuation_lines() -> None:
    tool = load_tool()
    text = "a:\n  # -- first line\n  # second line\n  b: 1\n# plain comment\nc: 2\n"
    assert tool.documented_keys(text) == [("a.b", "first line second line")]


def storage_policy_rows() -> list[str]:
    """The rows the README's least-policy table must have, from the contracts' table."""
    from emulsion_contracts.storage_access import ACCESS

    def cell(patterns: tuple[str, ...]) -> str:
        return " ".join(f"`{pattern}`" for pattern in patterns) or "—"

    return [
        f"| `{component}` | {cell(access.read)} | {cell(access.write)} | "
        f"{cell(access.delete)} | {cell(access.list)} |"
        for component, access in ACCESS.items()
    ]


def test_the_readme_storage_policy_is_the_one_the_local_stack_enforces() -> None:
    """The least S3 policy the README gives an operator is the table the local
    stack's MinIO policies are made from (tests/security proves them there)."""
    text = (CHART / "README.md").read_text()
    start = text.index("<!-- storage-policy:start")
    table = text[start : text.index("<!-- storage-policy:end -->")].splitlines()
    rows = [line for line in table if line.startswith("| `")]
    assert rows == storage_policy_rows()
