"""Configuration from EMULSION_API_URL and EMULSION_TOKEN, failing with one clear line."""

from __future__ import annotations

import pytest

from emulsion_cli.config import Config, load_config
from emulsion_cli.errors import CliError


def test_reads_both_and_trims_the_url() -> None:
    config = load_config({"EMULSION_API_URL": "http://127.0.0.1:8000/", "EMULSION_TOKEN": "t"})
    assert config == Config("http://127.0.0.1:8000", "t")


def test_names_every_missing_variable() -> None:
    with pytest.raises(CliError) as raised:
        load_config({})
    assert "EMULSION_API_URL and EMULSION_TOKEN not set" in raised.value.message
    assert "source .emulsion/env" in raised.value.message


def test_refuses_a_url_that_is_not_http() -> None:
    with pytest.raises(CliError, match="not an http"):
        load_config({"EMULSION_API_URL": "127.0.0.1:8000", "EMULSION_TOKEN": "t"})
