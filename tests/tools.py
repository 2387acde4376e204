"""The repository's generator scripts under tools/, as their drift tests use them: loaded
as modules by path (tools/ is no package), and run with `--check`."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def load_tool(name: str) -> ModuleType:
    # As `python tools/<name>.py` runs it: its folder on the path, for what the tools share.
    if str(TOOLS) not in sys.path:
        sys.path.append(str(TOOLS))
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # Dataclasses look their module up in sys.modules while the class is made.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def check(name: str) -> subprocess.CompletedProcess[str]:
    """`python tools/<name>.py --check`: exit 1 (and a message) when its output is stale."""
    return subprocess.run(
        [sys.executable, str(TOOLS / f"{name}.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
