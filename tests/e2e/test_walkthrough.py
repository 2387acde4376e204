"""docs/api-walkthrough.md runs as written: its `sh` blocks, in order, against the stack."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from PIL import Image

from emulsion_devstack.stack import LocalStack

DOC = Path(__file__).resolve().parents[2] / "docs" / "api-walkthrough.md"
SH_BLOCK = re.compile(r"^```sh\n(.*?)^```$", re.DOTALL | re.MULTILINE)


def shell_blocks(markdown: str) -> list[str]:
    return SH_BLOCK.findall(markdown)


def test_the_walkthrough_has_each_step() -> None:
    script = "\n".join(shell_blocks(DOC.read_text()))
    for step in ("/v1/uploads", "--form-string", "/v1/ingests", "?wait=", "/events", "/v1/assets/"):
        assert step in script, step


def test_the_walkthrough_runs_against_the_stack(system: LocalStack, tmp_path: Path) -> None:
    photo = tmp_path / "Café à la plage.jpg"
    Image.new("RGB", (640, 480), (200, 120, 40)).save(photo, quality=85)
    script = "set -euo pipefail\n" + "\n".join(shell_blocks(DOC.read_text()))
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, **system.client_environment(), "PHOTO": str(photo)},
    )
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    # The script itself asserts the job succeeded (jq -e '.succeeded == 1').
    assert "event: end" in result.stdout
    assert (tmp_path / "thumb.out").stat().st_size > 0
