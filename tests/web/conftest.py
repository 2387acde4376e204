"""The browser uploader against the whole system: the servers, the controller and the
processor as processes, and the API serving the page, with a second token scoped to
`tenant-*` collections only (EMULSION_API_TOKEN_SCOPES).
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page

from emulsion_api.scopes import token_digest
from emulsion_bench import page as uploader
from emulsion_devstack.stack import Endpoints, LocalStack, s3_client

TENANT_TOKEN = secrets.token_urlsafe(24)
TENANT_PREFIX = "tenant-"


@dataclass(frozen=True)
class WebSystem:
    stack: LocalStack
    endpoints: Endpoints
    api_url: str

    @property
    def admin_token(self) -> str:
        return self.endpoints.api_token

    def s3(self) -> Any:
        return s3_client(self.endpoints)

    def kube(self) -> Any:
        from kubernetes import client, config

        return client.CustomObjectsApi(
            config.new_client_from_config(config_file=self.endpoints.kubeconfig)
        )


@pytest.fixture(scope="session")
def web_system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebSystem]:
    uploader.ensure_built()
    stack = LocalStack(
        tmp_path_factory.mktemp("web-system"),
        services=("controller", "processor"),
        say=lambda line: None,
    )
    try:
        endpoints = stack.up()
        # Every write of a key is kept as a version, so the tests can count the uploads
        # each staging key received.
        s3_client(endpoints).put_bucket_versioning(
            Bucket=endpoints.bucket, VersioningConfiguration={"Status": "Enabled"}
        )
        scopes = {
            token_digest(endpoints.api_token): ["*"],
            token_digest(TENANT_TOKEN): [f"{TENANT_PREFIX}*"],
        }
        api = stack.start_service(
            "api",
            {
                "EMULSION_API_TOKENS": f"{endpoints.api_token},{TENANT_TOKEN}",
                "EMULSION_API_TOKEN_SCOPES": json.dumps(scopes),
            },
        )
        yield WebSystem(stack, endpoints, LocalStack.service_url(api))
    finally:
        stack.down()


@pytest.fixture
def context(tmp_path: Path) -> Iterator[BrowserContext]:
    with uploader.browser(tmp_path / "profile") as browser_context:
        yield browser_context


@pytest.fixture
def page(context: BrowserContext, web_system: WebSystem) -> Page:
    page = context.pages[0] if context.pages else context.new_page()
    page.goto(f"{web_system.api_url}/upload")
    return page
