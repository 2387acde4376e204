"""Help on every argument with examples, --version, and completion scripts for the shells."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import version

import pytest

from emulsion_cli.__main__ import parser


def commands(
    root: argparse.ArgumentParser, path: str = "emulsion"
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, root
    for action in root._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, f"{path} {name}")


def leaf_commands() -> list[tuple[str, argparse.ArgumentParser]]:
    return [
        (path, command)
        for path, command in commands(parser())
        if not any(isinstance(a, argparse._SubParsersAction) for a in command._actions)
    ]


def test_every_argument_has_help() -> None:
    for path, command in commands(parser()):
        for action in command._actions:
            if action.help == argparse.SUPPRESS:
                continue  # --json, the old spelling of -o json
            assert action.help, f"{path}: {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize(
    ("path", "command"), leaf_commands(), ids=lambda x: str(x) if isinstance(x, str) else ""
)
def test_every_command_has_examples_and_exit_codes(
    path: str, command: argparse.ArgumentParser
) -> None:
    help_text = command.format_help()
    assert "examples:\n" in help_text
    examples = help_text.split("examples:\n", 1)[1]
    assert path.split()[:2] == examples.split()[:2], f"{path}: its examples do not run it"
    assert "exit codes:" in help_text


@pytest.mark.parametrize(
    ("path", "command"), leaf_commands(), ids=lambda x: str(x) if isinstance(x, str) else ""
)
def test_every_command_but_completion_takes_an_output_format(
    path: str, command: argparse.ArgumentParser
) -> None:
    options = {o for a in command._actions for o in a.option_strings}
    assert ("-o" in options) == (path != "emulsion completion"), path


def run(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emulsion_cli", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# Integration, not `make unit`: runs the CLI as a process (see tests/conftest.py).
@pytest.mark.integration
def test_version() -> None:
    done = run("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"emulsion {version('emulsion-cli')}"


# Integration, not `make unit`: runs the CLI as a process (see tests/conftest.py).
@pytest.mark.integration
def test_usage_errors_exit_2() -> None:
    assert run("ingest").returncode == 2  # argparse: DIR and --collection missing
    assert run("ls", "c", "--page-size", "0").returncode == 2
    assert run("frobnicate").returncode == 2


# Integration, not `make unit`: runs the CLI and the shell as processes (see tests/conftest.py).
@pytest.mark.integration
@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts_know_the_commands_and_options(shell: str) -> None:
    done = run("completion", shell)
    assert done.returncode == 0, done.stderr
    script = done.stdout
    for word in ("ingest", "ls", "jobs", "status", "config", "use-context", "--include", "--watch"):
        assert word in script, (shell, word)
    checker = {"bash": ["bash", "-n"], "zsh": ["zsh", "-n"], "fish": ["fish", "--no-execute"]}[
        shell
    ]
    if shutil.which(checker[0]):
        checked = subprocess.run(
            [*checker], input=script, capture_output=True, text=True, check=False
        )
        assert checked.returncode == 0, checked.stderr


# Integration, not `make unit`: runs the CLI and bash as processes (see tests/conftest.py).
@pytest.mark.integration
def test_bash_completes_a_command_name() -> None:
    script = run("completion", "bash").stdout
    probe = (
        f"{script}\n"
        "COMP_WORDS=(emulsion in); COMP_CWORD=1; COMP_LINE='emulsion in'; COMP_POINT=11\n"
        "_shtab_emulsion emulsion in emulsion\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(["bash", "-c", probe], capture_output=True, text=True, check=False)
    assert "ingest" in done.stdout.split(), done.stderr
