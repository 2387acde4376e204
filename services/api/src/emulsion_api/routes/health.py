"""Probes, open without a token: kubelets carry none. `/metrics` is not here: it is served
on the ops port (`EMULSION_METRICS_PORT`, see `emulsion_api.ops`), away from the public API."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse

from emulsion_api.deps import ServicesDep
from emulsion_api.models import Health

router = APIRouter(tags=["health"])

READY_TIMEOUT = 3.0


@router.get("/healthz", response_model=Health, operation_id="healthz")
async def healthz() -> Health:
    """The process serves requests (liveness); says nothing about its dependencies."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    operation_id="readyz",
    responses={
        503: {
            "model": Health,
            "description": "The apiserver or the object store is down, or NATS never reached",
        }
    },
)
async def readyz(services: ServicesDep) -> Response:
    """Ready when the apiserver lets us list IngestJobs, the bucket answers, and NATS was
    reached once (versions are minted there). A later NATS outage keeps the API ready:
    reads need no NATS, and ingests and deletes answer 503 with Retry-After meanwhile."""
    kube_ok, store_ok = await asyncio.gather(
        _within(services.kube.ready(), READY_TIMEOUT),
        _within(services.store.ready(), READY_TIMEOUT),
    )
    bus_ok = services.bus.connected_once
    health = Health(
        status="ok" if kube_ok and store_ok and bus_ok else "unavailable",
        checks={"apiserver": kube_ok, "object_store": store_ok, "message_bus": bus_ok},
    )
    return JSONResponse(health.model_dump(), status_code=200 if health.status == "ok" else 503)


async def _within(check: Coroutine[Any, Any, bool], seconds: float) -> bool:
    # Each check on its own clock, so one slow backend does not hide the other's state.
    try:
        async with asyncio.timeout(seconds):
            return await check
    except TimeoutError:
        return False
