"""Rewrite references to the plumbing that left `emulsion_contracts` for `emulsion_runtime`.

`libs/contracts` (`emulsion_contracts`) holds the wire as data only; `libs/runtime`
(`emulsion_runtime`) holds the plumbing. This script rewrites every tracked file that
still names the old places, and nothing else; the modules themselves were moved once, by
hand, in the commit that added this script. It is idempotent: run it again on any tree
(after merging a branch that still imports the old paths) and it rewrites only what is
still old.

    uv run python tools/split_contracts.py            # rewrite in place, list the files
    uv run python tools/split_contracts.py --check    # list what would change; exit 1 if any

What it rewrites, in every tracked `.py`, `.md`, `.toml`, `.yaml`/`.yml`, `.cfg`, `.ini`,
`.txt`, `.sh`, Dockerfile and Makefile (not `uv.lock`, not this file):

1. Dotted names, in code, strings, comments and docs: `emulsion_contracts.<moved module>`
   becomes `emulsion_runtime.<moved module>` (MOVED_MODULES), and a moved name of a split
   module, `emulsion_contracts.jobrecords.JobRecords`, its new home (MOVED_NAMES).
2. Paths: `libs/contracts/src/emulsion_contracts/<moved>.py`, `contracts/<moved>.py` and
   the moved tests `tests/contracts/test_<moved>.py` (MOVED_TESTS).
3. Python imports: `from emulsion_contracts import a, b, c` is split into one statement per
   package (moved modules come from `emulsion_runtime`); `from emulsion_contracts.jobrecords
   import X, Y` (or `.natsauth`) is split the same way by MOVED_NAMES. Aliases are kept.
4. Python attribute uses of a split module bound by `from emulsion_contracts import
   jobrecords` (or natsauth, under any alias): `jobrecords.put_items` becomes
   `records_store.put_items`, `natsauth.connect_options` becomes
   `messaging.connect_options`, `natsauth.WORK` (an alias of a wire name, removed)
   becomes `wire.WORK_STREAM`; the new module is imported beside the old one.
5. Then, on the Python files it changed and only those, `ruff check --fix --select I,F401`
   (sorts the imports, drops a binding no longer used) and `ruff format`, when ruff is on
   PATH or in the workspace's .venv.

Not handled (none exist today): `import emulsion_contracts.jobrecords as x` followed by
`x.put_items`, and moved names reached through `getattr` or a string other than
`setattr(jobrecords, "put_items", …)` (which is rewritten like an attribute).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OLD = "emulsion_contracts"
NEW = "emulsion_runtime"

# Whole modules that moved, under the same name.
MOVED_MODULES = (
    "allocator",
    "blocking",
    "clock",
    "consuming",
    "health",
    "ingestjobs",
    "kube",
    "messaging",
    "settings",
    "singleton",
    "storage",
    "telemetry",
)

_RECORDS_STORE = f"{NEW}.records_store"
_MESSAGING = f"{NEW}.messaging"
_WIRE = f"{OLD}.wire"
# Names of the split modules that moved: (module, name) -> (new module, new name).
# The wire aliases (`jobrecords.INGESTS_STORE = wire.INGESTS_STORE`, `natsauth.WORK = …`)
# are gone: their uses name `wire` directly.
MOVED_NAMES: dict[tuple[str, str], tuple[str, str]] = {
    **{
        ("jobrecords", name): (_RECORDS_STORE, name)
        for name in (
            "ItemsCorrupt",
            "ItemsMissing",
            "JobRecords",
            "RecordConflict",
            "get_items",
            "get_items_of_gone_job",
            "put_items",
        )
    },
    ("jobrecords", "INGESTS_STORE"): (_WIRE, "INGESTS_STORE"),
    ("jobrecords", "RECORDS_BUCKET"): (_WIRE, "RECORDS_BUCKET"),
    ("natsauth", "connect_options"): (_MESSAGING, "connect_options"),
    ("natsauth", "tls_context"): (_MESSAGING, "tls_context"),
    ("natsauth", "CLOCK_BUCKET"): (_WIRE, "CLOCK_BUCKET"),
    ("natsauth", "INGESTS"): (_WIRE, "INGESTS_STORE"),
    ("natsauth", "RECORDS"): (_WIRE, "RECORDS_BUCKET"),
    ("natsauth", "WORK"): (_WIRE, "WORK_STREAM"),
    ("natsauth", "EVENTS"): (_WIRE, "EVENTS_STREAM"),
    ("natsauth", "GC"): (_WIRE, "GC_STREAM"),
    ("natsauth", "ADVISORIES"): (_WIRE, "ADVISORIES_STREAM"),
}
SPLIT_MODULES = tuple(sorted({module for module, _ in MOVED_NAMES}))

# Tests that followed their module: tests/contracts/test_<x>.py -> tests/runtime/.
MOVED_TESTS = (
    "allocator",
    "blocking",
    "clock",
    "consuming",
    "ingestjobs",
    "singleton",
    "storage_client",
    "telemetry",
)

SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".cfg", ".ini", ".txt", ".sh"}
NAMES = {"Dockerfile", "Makefile"}
SKIP = {"uv.lock", "tools/split_contracts.py"}

_MODULES = "|".join(MOVED_MODULES)
_DOTTED_MODULE = re.compile(rf"\b{OLD}\.({_MODULES})\b")
_DOTTED_NAME = re.compile(
    rf"\b{OLD}\.({'|'.join(SPLIT_MODULES)})\.({'|'.join(sorted({n for _, n in MOVED_NAMES}))})\b"
)
_LIB_PATH = re.compile(rf"\blibs/contracts/src/{OLD}/({_MODULES})\.py\b")
_SHORT_PATH = re.compile(rf"(?<![\w/.-])contracts/({_MODULES})\.py\b")
_TEST_PATH = re.compile(rf"\btests/contracts/test_({'|'.join(MOVED_TESTS)})\.py\b")
# `from <module> import <names>`, names on one line, continued by backslashes, or in
# parentheses over several lines.
_FROM_IMPORT = re.compile(
    r"^(?P<indent>[ \t]*)from[ \t]+(?P<module>emulsion_\w+(?:\.\w+)?)[ \t]+import[ \t]+"
    r"(?P<names>\([^)]*\)|(?:[^\n\\]*\\\n)*[^\n]*)$",
    re.MULTILINE,
)


def _dotted(text: str) -> str:
    def name(match: re.Match[str]) -> str:
        module, new_name = MOVED_NAMES[(match[1], match[2])]
        return f"{module}.{new_name}"

    text = _DOTTED_NAME.sub(name, text)
    return _DOTTED_MODULE.sub(rf"{NEW}.\1", text)


def _paths(text: str) -> str:
    text = _LIB_PATH.sub(rf"libs/runtime/src/{NEW}/\1.py", text)
    text = _SHORT_PATH.sub(r"runtime/\1.py", text)
    return _TEST_PATH.sub(r"tests/runtime/test_\1.py", text)


def _names(source: str) -> list[tuple[str, str | None]]:
    """`a, b as c` (with parentheses, comments, continuation lines) as [(a, None), (b, c)]."""
    cleaned = re.sub(r"#[^\n]*", "", source).replace("\\\n", " ").strip().strip("()")
    found: list[tuple[str, str | None]] = []
    for part in cleaned.split(","):
        words = part.split()
        if not words:
            continue
        if len(words) == 3 and words[1] == "as":
            found.append((words[0], words[2]))
        else:
            found.append((words[0], None))
    return found


def _statement(indent: str, module: str, names: list[tuple[str, str | None]]) -> str:
    listed = ", ".join(name if alias is None else f"{name} as {alias}" for name, alias in names)
    return f"{indent}from {module} import {listed}"


def _split_import(match: re.Match[str]) -> str:
    """One `from emulsion_contracts[.x] import …` as one statement per home."""
    indent, module = match["indent"], match["module"]
    if module != OLD and not module.startswith(f"{OLD}."):
        return match[0]
    homes: dict[str, list[tuple[str, str | None]]] = {}
    for name, alias in _names(match["names"]):
        home, new_name = module, name
        if module == OLD and name in MOVED_MODULES:
            home = NEW
        elif module.startswith(f"{OLD}."):
            key = (module.removeprefix(f"{OLD}."), name)
            if key in MOVED_NAMES:
                home, new_name = MOVED_NAMES[key]
                if new_name != name and alias is None:
                    alias = name
        homes.setdefault(home, []).append((new_name, alias))
    if list(homes) == [module]:
        return match[0]
    return "\n".join(_statement(indent, home, names) for home, names in homes.items())


def _binding(text: str, module: str, name: str) -> re.Match[str] | None:
    """The `from <module> import …` statement that binds `name` (without an alias)."""
    for match in _FROM_IMPORT.finditer(text):
        if match["module"] == module and (name, None) in _names(match["names"]):
            return match
    return None


def _split_attributes(text: str) -> str:
    """`jobrecords.put_items` -> `records_store.put_items`, importing records_store."""
    for match in list(_FROM_IMPORT.finditer(text)):
        if match["module"] != OLD:
            continue
        for name, alias in _names(match["names"]):
            if name not in SPLIT_MODULES:
                continue
            local = alias or name
            moved = sorted(n for m, n in MOVED_NAMES if m == name)
            # `jobrecords.put_items`, and `setattr(jobrecords, "put_items", …)` in tests.
            use = re.compile(rf"(?<![\w.]){re.escape(local)}(\.|, [\"'])({'|'.join(moved)})\b")
            needed = sorted({MOVED_NAMES[(name, found)][0] for _, found in use.findall(text)})

            def new_name(found: re.Match[str], split: str = name) -> str:
                home, renamed = MOVED_NAMES[(split, found[2])]
                return f"{home.rpartition('.')[2]}{found[1]}{renamed}"

            text = use.sub(new_name, text)
            for home in needed:
                parent, _, leaf = home.rpartition(".")
                if _binding(text, parent, leaf):
                    continue
                if re.search(rf"(?<![\w.]){leaf}[ \t]*=[^=]|\bimport\b[^\n]*\b{leaf}\b", text):
                    sys.exit(f"{leaf} is bound to something else in a file: rewrite it by hand")
                # Beside the statement that binds the split module (ruff sorts it later).
                beside = _binding(text, OLD, name) if alias is None else None
                if beside is None:
                    beside = next(
                        m
                        for m in _FROM_IMPORT.finditer(text)
                        if m["module"] == OLD and (name, alias) in _names(m["names"])
                    )
                line = f"\n{beside['indent']}from {parent} import {leaf}"
                text = text[: beside.end()] + line + text[beside.end() :]
    return text


def rewrite(path: Path, text: str) -> str:
    text = _paths(_dotted(text))
    if path.suffix == ".py":
        text = _FROM_IMPORT.sub(_split_import, text)
        text = _split_attributes(text)
    return text


def tracked() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    files = []
    for name in filter(None, listed.split("\0")):
        path = Path(name)
        if name in SKIP or not (ROOT / path).is_file():
            continue
        if path.suffix in SUFFIXES or path.name in NAMES or path.name.endswith(".Dockerfile"):
            files.append(path)
    return files


def _ruff() -> str | None:
    local = ROOT / ".venv" / "bin" / "ruff"
    return str(local) if local.exists() else shutil.which("ruff")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if stale")
    arguments = parser.parse_args()
    changed: list[Path] = []
    for path in tracked():
        text = (ROOT / path).read_text()
        new = rewrite(path, text)
        if new != text:
            changed.append(path)
            if not arguments.check:
                (ROOT / path).write_text(new)
    for path in changed:
        print(path)
    if arguments.check:
        return 1 if changed else 0
    python = [str(ROOT / p) for p in changed if p.suffix == ".py"]
    ruff = _ruff()
    if python and ruff:
        subprocess.run([ruff, "check", "--fix", "--select", "I,F401", *python], cwd=ROOT)
        subprocess.run([ruff, "format", *python], cwd=ROOT, check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
