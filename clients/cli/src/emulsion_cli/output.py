"""`-o table|json|yaml`: one document per command, the same for every command.

JSON and YAML go straight to stdout (not through rich, which wraps long lines at the
console width and would break them). A stream of documents (`status --watch`) is one
JSON document per line, or YAML documents separated by `---`.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

Format = Literal["table", "json", "yaml"]
FORMATS: Final[tuple[Format, ...]] = ("table", "json", "yaml")

out = Console()


def literal(console: Console, text: str, **options: Any) -> None:
    """Print `text` as it is: names and messages come from the user or the server, so no
    markup is read in them and nothing is highlighted."""
    console.print(text, highlight=False, markup=False, **options)


def printable(text: str) -> str:
    """File names can hold anything (newlines, escape sequences, undecodable bytes);
    the terminal gets them escaped, never interpreted."""
    return "".join(
        c if c.isprintable() else c.encode("unicode_escape", "backslashreplace").decode()
        for c in text
    )


def _yaml(document: object) -> str:
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False)


def emit(document: object, fmt: Format, table: Callable[[], None]) -> None:
    """The document as JSON or YAML, or the command's own table for people."""
    if fmt == "json":
        sys.stdout.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    elif fmt == "yaml":
        sys.stdout.write(_yaml(document))
    else:
        table()
    sys.stdout.flush()


def emit_in_stream(document: object, fmt: Format, table: Callable[[], None]) -> None:
    """One document of several, each readable as soon as it is written."""
    if fmt == "json":
        sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")
    elif fmt == "yaml":
        sys.stdout.write("---\n" + _yaml(document))
    else:
        table()
    sys.stdout.flush()


def cell(value: Any) -> Text:
    if value is None:
        return Text("")
    if isinstance(value, list | dict):
        return Text(str(len(value)))
    return Text(printable(str(value)))


def rows_table(
    items: Sequence[dict[str, Any]], preferred: Sequence[str], title: str | None = None
) -> Table:
    """A table of the preferred columns that any item has (list shapes may grow fields;
    what is not known is left out here and kept in `-o json`)."""
    columns = [name for name in preferred if any(name in item for item in items)]
    if not columns and items:
        columns = [k for k, v in items[0].items() if not isinstance(v, list | dict)]
    table = Table(title=title, show_header=True, header_style="bold", box=None)
    for name in columns:
        table.add_column(name.upper().replace("_", " "), overflow="fold")
    for item in items:
        table.add_row(*(cell(item.get(name)) for name in columns))
    return table


def key_values(document: dict[str, Any], keys: Sequence[str], title: str) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column()
    for key in keys:
        if document.get(key) is not None:
            table.add_row(key, cell(document[key]))
    return table
