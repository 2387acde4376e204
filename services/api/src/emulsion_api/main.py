"""Assembles the app: clients made once in the lifespan, middleware, error handlers, routers.

`main` is the console script and `python -m emulsion_api`: uvicorn on
`0.0.0.0:$EMULSION_HTTP_PORT`. On SIGTERM uvicorn stops accepting, finishes the
requests in hand (event streams get a bounded grace), then the lifespan closes the
clients and NATS is drained.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

from emulsion_api import errors
from emulsion_api.bus import Bus
from emulsion_api.deps import Services
from emulsion_api.kube import Kube
from emulsion_api.middleware import BodyLimitMiddleware, MetricsMiddleware
from emulsion_api.routes import access, assets, batches, health, ingests, uploads, web
from emulsion_api.settings import ApiSettings, load_api_settings
from emulsion_api.store import Store
from emulsion_contracts import kube, storage, telemetry
from emulsion_contracts.blocking import Blocking
from emulsion_contracts.profiles import load_profiles

log = logging.getLogger(__name__)

SERVICE_NAME = "emulsion-api"
# Open event streams would hold a shutdown forever; past this they are cut.
SHUTDOWN_GRACE_SECONDS = 10
# Probes and scrapes every few seconds would bury the requests in traces.
UNTRACED_URLS = "healthz,readyz,metrics"


def _services(settings: ApiSettings, blocking: Blocking) -> Services:
    return Services(
        settings=settings,
        tokens=tuple((token.encode(), scopes) for token, scopes in settings.scoped_tokens()),
        profiles=load_profiles(settings.profiles_file),
        kube=Kube(
            # One connection per I/O thread, so no call waits for a pooled connection.
            kube.api_client(settings.kubeconfig, connections=settings.io_threads),
            settings.namespace,
            blocking,
            settings.max_watches,
        ),
        store=Store(
            storage.s3_client(settings, max_pool_connections=settings.io_threads),
            settings,
            blocking,
        ),
        bus=Bus(settings.nats_url),
    )


def create_app(settings: ApiSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        blocking = Blocking(settings.io_threads, "io")
        services = _services(settings, blocking)
        services.bus.start()
        app.state.services = services
        log.info("serving", extra={"namespace": settings.namespace})
        try:
            yield
        finally:
            await services.bus.close()
            services.kube.close()
            blocking.close()

    app = FastAPI(
        title="Emulsion API",
        version="1",
        summary="Presigned direct uploads, 202-accepted ingests, status and asset deletion",
        lifespan=lifespan,
    )
    errors.install(app)
    for module in (uploads, ingests, batches, assets, access, health, web):
        app.include_router(module.router)
    # Outermost first: metrics see every answer, including a 413 from the body limit.
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware)
    # One server span per request; per-message send/receive spans cost more than they tell.
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls=UNTRACED_URLS, exclude_spans=["receive", "send"]
    )
    _document_limits(app, settings)
    return app


def _document_limits(app: FastAPI, settings: ApiSettings) -> None:
    """Put the configured limits into the OpenAPI document, so it tells clients the truth.

    The models cannot carry them (they are fixed at import, the limits at start-up); the
    routes enforce them with their own error codes.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schemas = generate()["components"]["schemas"]
            schemas["UploadRequest"]["properties"]["size"]["maximum"] = settings.upload_max_bytes
            schemas["UploadBatchRequest"]["properties"]["files"]["maxItems"] = (
                settings.max_upload_batch
            )
            schemas["IngestRequest"]["properties"]["items"]["maxItems"] = settings.max_request_items
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


def main() -> None:
    settings = load_api_settings()
    telemetry.setup(SERVICE_NAME, settings.log_level)
    if not BotocoreInstrumentor().is_instrumented_by_opentelemetry:
        BotocoreInstrumentor().instrument()
    try:
        uvicorn.run(
            create_app(settings),
            host="0.0.0.0",  # noqa: S104 - a server in a pod listens on every interface
            port=settings.http_port,
            log_config=None,  # keep the JSON logging telemetry.setup installed
            access_log=False,  # the metrics and traces cover requests
            timeout_graceful_shutdown=SHUTDOWN_GRACE_SECONDS,
        )
    finally:
        telemetry.shutdown()
