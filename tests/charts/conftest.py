"""Helpers for the chart tests: helm and kubectl from the stack's binary module, and renders.

helm's own state (repository cache, config) goes to a per-session temp dir, so the tests
never read or write a developer's ~/.config/helm.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulsion_devstack.binaries import ensure_binary

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART = REPO_ROOT / "charts" / "emulsion"
COMPONENTS = ("api", "controller", "janitor", "processor")


class CommandFailed(AssertionError):
    """A helm or kubectl command exited non-zero; the message carries its output."""


@dataclass(frozen=True)
class Tools:
    helm: Path
    kubectl: Path
    home: Path

    def environment(self, kubeconfig: str | None) -> dict[str, str]:
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        if kubeconfig is not None:
            env["KUBECONFIG"] = kubeconfig
        else:
            env.pop("KUBECONFIG", None)
        return env

    def run(
        self,
        tool: str,
        *args: str,
        kubeconfig: str | None = None,
        stdin: str | None = None,
        check: bool = True,
    ) -> subprocess.CompletedProcess[str]:
        binary = self.helm if tool == "helm" else self.kubectl
        result = subprocess.run(
            [str(binary), *args],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=180,
            env=self.environment(kubeconfig),
            check=False,
        )
        if check and result.returncode != 0:
            raise CommandFailed(
                f"{tool} {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}\n{result.stderr}"
            )
        return result

    def helm_(self, *args: str, kubeconfig: str | None = None) -> str:
        return self.run("helm", *args, kubeconfig=kubeconfig).stdout

    def kubectl_(self, *args: str, kubeconfig: str, stdin: str | None = None) -> str:
        return self.run("kubectl", *args, kubeconfig=kubeconfig, stdin=stdin).stdout


@pytest.fixture(scope="session")
def tools(tmp_path_factory: pytest.TempPathFactory) -> Tools:
    return Tools(
        helm=ensure_binary("helm"),
        kubectl=ensure_binary("kubectl"),
        home=tmp_path_factory.mktemp("helm-home"),
    )


def template(
    tools: Tools,
    values: Mapping[str, Any] | None = None,
    *,
    chart: Path = CHART,
    release: str = "t",
    namespace: str = "emulsion",
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    args = ["template", release, str(chart), "--namespace", namespace]
    if not any(key.startswith("apiTokens") for key in values or {}):
        # The chart refuses to render without token scopes unless told that every token
        # is an admin; a test that does not care about tokens renders the one-tenant setup.
        values = {"apiTokens.allowAdminTokens": True, **(values or {})}
    for key, value in (values or {}).items():
        args += ["--set-json", f"{key}={json.dumps(value)}"]
    return tools.run("helm", *args, check=check)


def render(
    tools: Tools, values: Mapping[str, Any] | None = None, **kwargs: Any
) -> list[dict[str, Any]]:
    """The objects `helm template` makes, as dicts (empty documents dropped)."""
    output = template(tools, values, **kwargs).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objects if o["kind"] == kind}


def component_of(obj: dict[str, Any]) -> str:
    component: str = obj["metadata"]["labels"]["app.kubernetes.io/component"]
    return component
