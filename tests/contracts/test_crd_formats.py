"""The IngestJob CRD takes a style's `formats` and `qualities` as the contracts do, and
the apiserver refuses a style that names `format` and `formats` both (CEL), as
`StyleSpec` does."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from emulsion_contracts import keys
from emulsion_contracts.messages import StyleSpec
from tests.jobmaking import create_job


def _create_job(kube: Any, style: dict[str, Any]) -> None:
    create_job(
        client.CustomObjectsApi(kube),
        keys.new_ulid().lower(),
        {
            "collection": "crd-formats",
            "styles": [style],
            "items": [
                {
                    "source": keys.staging_key("crd-formats", keys.new_ulid(), "x.jpg"),
                    "asset": "x.jpg",
                }
            ],
        },
    )


BASE = {"name": "large", "width": 800, "height": 800}


@pytest.mark.parametrize(
    "extra",
    [
        {"formats": ["avif", "webp", "jpeg"]},
        {"formats": ["avif", "jpeg"], "qualities": {"avif": 60}},
        {"format": "avif", "quality": 60},
    ],
)
def test_the_apiserver_and_the_contracts_accept_a_style_with_formats(
    kube: Any, extra: dict[str, Any]
) -> None:
    StyleSpec.model_validate({**BASE, **extra})
    _create_job(kube, {**BASE, **extra})


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"format": "jpeg", "formats": ["avif", "jpeg"]}, "format or formats"),
        ({"formats": ["avif", "avif"]}, "formats"),
        ({"formats": ["gif"]}, "formats"),
        ({"formats": []}, "formats"),
        ({"formats": ["avif"], "qualities": {"avif": 101}}, "qualities"),
    ],
)
def test_the_apiserver_and_the_contracts_refuse_the_same_styles(
    kube: Any, extra: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationError):
        StyleSpec.model_validate({**BASE, **extra})
    with pytest.raises(ApiException) as refused:
        _create_job(kube, {**BASE, **extra})
    assert refused.value.status == 422
    assert field in str(refused.value.body)
