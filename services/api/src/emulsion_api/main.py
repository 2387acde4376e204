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
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from pydantic import BaseModel

from emulsion_api import errors, models
from emulsion_api.apiserver import Kube
from emulsion_api.commits import GroupCommit
from emulsion_api.deps import Services
from emulsion_api.jetstream import Bus
from emulsion_api.limits import Limiter
from emulsion_api.middleware import BodyLimitMiddleware, MetricsMiddleware
from emulsion_api.ops import serve_metrics
from emulsion_api.records import Records
from emulsion_api.routes import access, assets, batches, health, ingests, profiles, uploads, web
from emulsion_api.settings import ApiSettings, load_api_settings
from emulsion_api.store import Store
from emulsion_api.tokens import Tokens
from emulsion_contracts import crd
from emulsion_contracts.profiles import load_profiles
from emulsion_runtime import kube, storage, telemetry
from emulsion_runtime.blocking import Blocking
from emulsion_runtime.ingestjobs import ApiServer

log = logging.getLogger(__name__)

SERVICE_NAME = "emulsion-api"
# Longer than the idle timeout of clients and proxies (httpx 5 s, most load balancers 60 s),
# so the client closes an idle connection first: with equal timeouts (uvicorn's default is
# 5 s) a request sent just as the server closes the connection fails with a reset.
KEEP_ALIVE_SECONDS = 75
# Probes every few seconds would bury the requests in traces.
UNTRACED_URLS = "healthz,readyz"
# What a browser page on an allowed origin may send, and read back, across origins.
CORS_REQUEST_HEADERS = (
    "Authorization",
    "Content-Type",
    "Idempotency-Key",
    "If-Match",
    "If-None-Match",
    "Last-Event-ID",
)
CORS_RESPONSE_HEADERS = (
    "ETag",
    "Location",
    "Retry-After",
    "Idempotent-Replayed",
    "WWW-Authenticate",
)
# Problems any path can answer with, from the framework rather than a route.
GENERIC_CODES: tuple[errors.ErrorCode, ...] = ("method_not_allowed", "http_error")
DESCRIPTION = f"""Presigned direct uploads, 202-accepted ingests, status, lists and asset deletion.

Every error is an RFC 9457 problem (`application/problem+json`) with a stable `code`; each
operation lists the codes it can answer with. Besides those, any path may answer
{", ".join(f"`{code}`" for code in GENERIC_CODES)} (e.g. 405 with `Allow`).
"""


def _services(settings: ApiSettings, blocking: Blocking) -> Services:
    bus = Bus(settings)
    return Services(
        settings=settings,
        tokens=Tokens(settings),
        profiles=load_profiles(settings.profiles_file),
        kube=_kube(settings),
        store=Store(
            storage.s3_client(settings, max_pool_connections=settings.io_threads),
            settings,
            blocking,
        ),
        bus=bus,
        records=Records(bus, settings.namespace),
        commits=GroupCommit(crd.MAX_ITEMS),
        limiter=Limiter(settings.max_watches),
    )


def _kube(settings: ApiSettings) -> Kube:
    # The Kubernetes client only finds the credentials (in-cluster or kubeconfig); calls
    # go over one async pool, where a watch holds a connection, not a thread.
    configuration = kube.api_client(settings.kubeconfig).configuration
    server = ApiServer(configuration, settings.io_threads + settings.max_watches)
    return Kube(server, settings.namespace, settings.max_watches)


def create_app(settings: ApiSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        blocking = Blocking(settings.io_threads, "io")
        services = _services(settings, blocking)
        services.bus.start()
        services.tokens.start()
        app.state.services = services
        ops = serve_metrics(settings.metrics_port)
        log.info(
            "serving",
            extra={"namespace": settings.namespace, "metrics_port": settings.metrics_port},
        )
        try:
            yield
        finally:
            ops.close()
            await services.tokens.close()
            await services.bus.close()
            await services.kube.close()
            blocking.close()

    app = FastAPI(
        title="Emulsion API",
        version="1",
        summary="Presigned direct uploads, 202-accepted ingests, status, lists and asset deletion",
        description=DESCRIPTION,
        lifespan=lifespan,
        # Every route names its operationId; this keeps any other one stable too.
        generate_unique_id_function=_operation_id,
    )
    errors.install(app)
    for module in (uploads, ingests, batches, assets, profiles, access, health, web):
        app.include_router(module.router)
    # Added innermost first: metrics see every answer, a preflight too; CORS headers go
    # on every answer a page may read, a 413 from the body limit too.
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(settings.cors_origins()),
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=list(CORS_REQUEST_HEADERS),
        expose_headers=list(CORS_RESPONSE_HEADERS),
        # Bearer tokens, not cookies: no credentialed requests.
        allow_credentials=False,
        max_age=600,
    )
    app.add_middleware(MetricsMiddleware)
    # One server span per request; per-message send/receive spans cost more than they tell.
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls=UNTRACED_URLS, exclude_spans=["receive", "send"]
    )
    _document_limits(app, settings)
    return app


def _operation_id(route: APIRoute) -> str:
    return route.name


def _document_limits(app: FastAPI, settings: ApiSettings) -> None:
    """Finish the OpenAPI document, so it tells clients the truth: the configured limits
    (the models are fixed at import, the limits at start-up; the routes enforce them
    with their own error codes), problems as `application/problem+json`, and the event
    stream's events typed.
    """
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            schemas = document["components"]["schemas"]
            for schema in ("UploadRequest", "UploadFile"):
                schemas[schema]["properties"]["size"]["maximum"] = settings.upload_max_bytes
            schemas["UploadBatchRequest"]["properties"]["files"]["maxItems"] = (
                settings.max_upload_batch
            )
            schemas["IngestRequest"]["properties"]["items"]["maxItems"] = settings.max_request_items
            errors.document(document)
            _document_events(document)
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


# The event stream's events: name -> the model of its JSON `data`.
STREAM_EVENTS: dict[str, type[BaseModel]] = {
    "status": models.JobSummary,
    "end": models.JobSummary,
    "deleted": models.JobDeletedEvent,
    "error": models.StreamErrorEvent,
}


def _document_events(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]
    variants = []
    for event, model in STREAM_EVENTS.items():
        name = model.__name__
        if name not in schemas:
            schemas[name] = model.model_json_schema(ref_template="#/components/schemas/{model}")
        variants.append(
            {
                "type": "object",
                "required": ["event", "data"],
                "properties": {
                    "event": {"const": event},
                    "id": {"type": "string", "description": "The job's resourceVersion."},
                    "data": {
                        "type": "string",
                        "contentMediaType": "application/json",
                        "contentSchema": {"$ref": f"#/components/schemas/{name}"},
                    },
                },
            }
        )
    operation = document["paths"]["/v1/ingests/{name}/events"]["get"]
    operation["responses"]["200"]["content"] = {
        "text/event-stream": {"itemSchema": {"oneOf": variants}}
    }


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
            # Open event streams would hold a shutdown forever; past this they are cut.
            timeout_graceful_shutdown=settings.shutdown_grace_seconds,
            timeout_keep_alive=KEEP_ALIVE_SECONDS,
            # The C event loop and HTTP parser: less CPU per request than asyncio's and h11.
            loop="uvloop",
            http="httptools",
        )
    finally:
        telemetry.shutdown()
