"""Probes and the OpenAPI document are open; readiness reflects the backends; metrics are
on the ops port, not the public one."""

from __future__ import annotations

import re

import httpx

from ..conftest import ApiProcess


def test_probes_and_openapi_need_no_token(api_process: ApiProcess) -> None:
    with httpx.Client(base_url=api_process.url) as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok", "checks": {}}
        ready = anonymous.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"] == {
            "apiserver": True,
            "object_store": True,
            "message_bus": True,
        }
        assert anonymous.get("/openapi.json").json()["info"]["title"] == "Emulsion API"


def test_metrics_are_served_on_the_ops_port_only(api_process: ApiProcess) -> None:
    assert httpx.get(api_process.metrics_url).status_code == 200
    public = httpx.get(f"{api_process.url}/metrics")
    assert public.status_code == 404
    assert public.json()["code"] == "not_found"


def test_metrics_count_requests_by_route_template_and_status(api_process: ApiProcess) -> None:
    with api_process.client() as api:
        api.get("/v1/ingests/metrics-probe-one")
        api.get("/v1/ingests/metrics-probe-two")
    metrics = httpx.get(api_process.metrics_url).text

    count = re.search(
        r"^emulsion_api_requests_total"
        r'\{method="GET",route="/v1/ingests/\{name\}",status="404"\} (\S+)$',
        metrics,
        re.MULTILINE,
    )
    assert count is not None and float(count.group(1)) >= 2
    assert 'emulsion_api_request_duration_seconds_bucket{le="0.041",method="GET"' in metrics
    assert "metrics-probe-one" not in metrics
