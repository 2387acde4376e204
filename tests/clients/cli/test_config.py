"""Configuration: flags over environment over the config file's context, per setting;
the contexts file and `emulsion config ...`; one clear line when something is missing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from emulsion_cli.config import Config, ConfigFile, Overrides, config_path, load_config
from emulsion_cli.errors import EXIT_USAGE, CliError


def test_reads_both_and_trims_the_url(tmp_path: Path) -> None:
    environ = {
        "EMULSION_API_URL": "http://127.0.0.1:8000/",
        "EMULSION_TOKEN": "t",
        "EMULSION_CONFIG": str(tmp_path / "none.yaml"),
    }
    assert load_config(environ) == Config("http://127.0.0.1:8000", "t")


def test_names_every_missing_setting(tmp_path: Path) -> None:
    with pytest.raises(CliError) as raised:
        load_config({"EMULSION_CONFIG": str(tmp_path / "none.yaml")})
    assert raised.value.exit_code == EXIT_USAGE
    message = raised.value.message
    assert "the API URL (--api-url, EMULSION_API_URL)" in message
    assert "the token (--token-file, EMULSION_TOKEN, EMULSION_TOKEN_FILE)" in message
    assert "not set" in message
    assert "source .emulsion/env" in message


def test_refuses_a_url_that_is_not_http(tmp_path: Path) -> None:
    with pytest.raises(CliError, match=r"EMULSION_API_URL '127\.0\.0\.1:8000' is not an http"):
        load_config(
            {
                "EMULSION_API_URL": "127.0.0.1:8000",
                "EMULSION_TOKEN": "t",
                "EMULSION_CONFIG": str(tmp_path / "none.yaml"),
            }
        )


def test_the_file_lives_under_xdg_config_home(tmp_path: Path) -> None:
    assert config_path({"XDG_CONFIG_HOME": str(tmp_path)}) == tmp_path / "emulsion/config.yaml"
    assert config_path({"EMULSION_CONFIG": str(tmp_path / "x.yaml")}) == tmp_path / "x.yaml"
    assert config_path({}) == Path.home() / ".config/emulsion/config.yaml"


SOURCES = ("flag", "env", "context")


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(url_from=st.sets(st.sampled_from(SOURCES)), token_from=st.sets(st.sampled_from(SOURCES)))
def test_flags_beat_environment_beat_the_config_file(
    tmp_path: Path, url_from: set[str], token_from: set[str]
) -> None:
    """For each setting on its own, the highest source that has it wins."""
    for source in SOURCES:
        (tmp_path / f"{source}.token").write_text(f"token-{source}\n")
    file = ConfigFile(tmp_path / "config.yaml")
    file.set_context(
        "home",
        "http://context.test" if "context" in url_from else None,
        "context.token" if "context" in token_from else None,  # relative to the file
    )
    file.use_context("home")
    file.save()
    environ = {"EMULSION_CONFIG": str(file.path)}
    if "env" in url_from:
        environ["EMULSION_API_URL"] = "http://env.test"
    if "env" in token_from:
        environ["EMULSION_TOKEN_FILE"] = str(tmp_path / "env.token")
    overrides = Overrides(
        api_url="http://flag.test" if "flag" in url_from else None,
        token_file=str(tmp_path / "flag.token") if "flag" in token_from else None,
    )
    if not url_from or not token_from:
        with pytest.raises(CliError, match="not set"):
            load_config(environ, overrides)
        return

    config = load_config(environ, overrides)

    winner = next(s for s in SOURCES if s in url_from)
    assert config.api_url == f"http://{winner}.test"
    winner = next(s for s in SOURCES if s in token_from)
    assert config.token == f"token-{winner}"


def test_a_named_context_beats_the_current_one(tmp_path: Path) -> None:
    file = ConfigFile(tmp_path / "config.yaml")
    file.set_context("a", "http://a.test", None)
    file.set_context("b", "http://b.test", None)
    file.use_context("a")
    file.save()
    environ = {"EMULSION_CONFIG": str(file.path), "EMULSION_TOKEN": "t"}
    assert load_config(environ).api_url == "http://a.test"
    assert load_config({**environ, "EMULSION_CONTEXT": "b"}).api_url == "http://b.test"
    assert load_config(environ, Overrides(context="b")).api_url == "http://b.test"
    with pytest.raises(CliError, match=r"no context 'c' .* \(known: a, b\)"):
        load_config(environ, Overrides(context="c"))


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("contexts: [1, 2]", "expected a mapping"),
        ("contexts:\n  a:\n    token: secret\n", "may only have api-url and token-file"),
        ("contexts: {a: [", "cannot read the config file"),
    ],
)
def test_a_malformed_file_is_named_not_ignored(tmp_path: Path, text: str, complaint: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    with pytest.raises(CliError, match=complaint) as raised:
        load_config({"EMULSION_CONFIG": str(path), "EMULSION_TOKEN": "t"})
    assert str(path) in raised.value.message


def test_an_empty_or_unreadable_token_file(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    environ = {"EMULSION_CONFIG": str(tmp_path / "none.yaml"), "EMULSION_API_URL": "http://a"}
    with pytest.raises(CliError, match="is empty"):
        load_config(environ, Overrides(token_file=str(tmp_path / "empty")))
    with pytest.raises(CliError, match="cannot read the token file"):
        load_config(environ, Overrides(token_file=str(tmp_path / "missing")))


def emulsion(*arguments: str, config_home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emulsion_cli", *arguments],
        env={"XDG_CONFIG_HOME": str(config_home), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# Integration, not `make unit`: runs the CLI as a process (see tests/conftest.py).
@pytest.mark.integration
def test_config_commands_write_a_kubeconfig_like_file(tmp_path: Path) -> None:
    home = tmp_path / "config"
    done = emulsion(
        "config", "set-context", "local", "--api-url", "http://127.0.0.1:8000/",
        "--token-file", "local.token", config_home=home,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert emulsion("config", "set-context", "prod", "--api-url", "https://e.test",
                    config_home=home).returncode == 0  # fmt: skip

    written = yaml.safe_load((home / "emulsion/config.yaml").read_text())
    assert written == {
        "current-context": "local",  # the first context becomes the current one
        "contexts": {
            "local": {"api-url": "http://127.0.0.1:8000", "token-file": "local.token"},
            "prod": {"api-url": "https://e.test"},
        },
    }

    assert emulsion("config", "use-context", "prod", config_home=home).returncode == 0
    current = emulsion("config", "current-context", config_home=home)
    assert current.stdout.strip() == "prod"
    listed = emulsion("config", "get-contexts", "-o", "json", config_home=home)
    assert json.loads(listed.stdout)["current-context"] == "prod"
    table = emulsion("config", "get-contexts", config_home=home)
    assert [line.split()[:2] for line in table.stdout.splitlines()[1:]] == [
        ["local", "http://127.0.0.1:8000"],
        ["*", "prod"],
    ]

    unknown = emulsion("config", "use-context", "staging", config_home=home)
    assert unknown.returncode == EXIT_USAGE
    assert "no context 'staging'" in unknown.stderr
    bad = emulsion("config", "set-context", "x", "--api-url", "ftp://x", config_home=home)
    assert bad.returncode == EXIT_USAGE
