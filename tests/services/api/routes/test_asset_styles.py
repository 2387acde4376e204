"""`/v1/assets/<collection>/<asset>/styles/<style>`: a redirect to the rendering the
request's `Accept` picks (`Vary: Accept`); assets list every rendering of a style."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from emulsion_contracts import keys
from emulsion_contracts.formats import OUTPUT_CONTENT_TYPES, OutputFormat
from emulsion_contracts.manifest import AssetManifest
from emulsion_contracts.messages import Derivative, Rendering
from emulsion_devstack.stack import Endpoints

from ..conftest import TENANT_B_TOKEN, ApiProcess, commit_original, new_collection

FORMATS: tuple[OutputFormat, ...] = ("avif", "webp", "jpeg")


def commit_renderings(s3: Any, bucket: str, collection: str, asset: str) -> AssetManifest:
    """A live asset whose `thumb` has three renderings and `large` one (JPEG)."""
    version = keys.version_id(keys.new_ulid(), 0)
    renderings = tuple(
        Rendering(
            format=name,
            key=keys.rendering_key(collection, asset, version, "thumb", name),
            bytes=len(name),
            content_type=OUTPUT_CONTENT_TYPES[name],
        )
        for name in FORMATS
    )
    thumb = Derivative(
        style="thumb",
        key=renderings[0].key,
        width=100,
        height=100,
        bytes=renderings[0].bytes,
        content_type=renderings[0].content_type,
        renderings=renderings,
    )
    large = Derivative(
        style="large",
        key=keys.rendering_key(collection, asset, version, "large", "jpeg"),
        width=800,
        height=600,
        bytes=4,
        content_type="image/jpeg",
    )
    for rendering in (*renderings, *large.all_renderings()):
        s3.put_object(
            Bucket=bucket,
            Key=rendering.key,
            Body=rendering.format.encode(),
            ContentType=rendering.content_type,
        )
    return commit_original(s3, bucket, collection, asset, version, (large, thumb), height=1200)


@pytest.fixture(scope="module")
def asset(api_process: ApiProcess, s3: Any, stack: Endpoints) -> tuple[str, AssetManifest]:
    collection = new_collection()
    return collection, commit_renderings(s3, stack.bucket, collection, "IMG 9.jpg")


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "avif"),
        ("*/*", "avif"),
        ("image/avif,image/webp,image/apng,image/*,*/*;q=0.8", "avif"),
        ("image/webp,image/png,image/*;q=0.8,*/*;q=0.5", "webp"),
        ("image/jpeg", "jpeg"),
        ("image/avif;q=0, image/webp;q=0.5, image/jpeg;q=0.9", "jpeg"),
        ("image/png", "jpeg"),  # nothing acceptable: the JPEG fallback
    ],
)
def test_the_style_url_redirects_to_the_rendering_accept_picks(
    api: httpx.Client, asset: tuple[str, AssetManifest], accept: str | None, expected: str
) -> None:
    collection, _ = asset
    headers = {} if accept is None else {"Accept": accept}
    # httpx sends `Accept: */*` unless told: remove it for the no-Accept case.
    request = api.build_request(
        "GET", f"/v1/assets/{collection}/IMG%209.jpg/styles/thumb", headers=headers
    )
    if accept is None:
        del request.headers["Accept"]
    response = api.send(request)

    assert response.status_code == 302, response.text
    assert "accept" in [v.strip().lower() for v in response.headers["Vary"].split(",")]
    assert response.headers["X-Emulsion-Format"] == expected
    download = httpx.get(response.headers["Location"])
    assert download.content == expected.encode()
    assert download.headers["Content-Type"] == OUTPUT_CONTENT_TYPES[expected]


def test_a_single_format_style_redirects_to_its_file_whatever_accept_says(
    api: httpx.Client, asset: tuple[str, AssetManifest]
) -> None:
    collection, _ = asset
    response = api.get(
        f"/v1/assets/{collection}/IMG%209.jpg/styles/large", headers={"Accept": "image/avif"}
    )
    assert response.status_code == 302
    assert response.headers["X-Emulsion-Format"] == "jpeg"
    assert httpx.get(response.headers["Location"]).content == b"jpeg"


def test_the_asset_lists_every_rendering(
    api: httpx.Client, asset: tuple[str, AssetManifest]
) -> None:
    collection, manifest = asset
    body = api.get(f"/v1/assets/{collection}/IMG%209.jpg").json()
    outputs = {output["style"]: output for output in body["outputs"]}
    assert outputs["large"]["renderings"] == []
    thumb = outputs["thumb"]
    assert [r["format"] for r in thumb["renderings"]] == list(FORMATS)
    assert thumb["content_type"] == "image/avif"  # the first rendering, for old readers
    assert [httpx.get(r["url"]).content for r in thumb["renderings"]] == [
        name.encode() for name in FORMATS
    ]
    listed = api.get(f"/v1/assets/{collection}").json()["items"][0]["outputs"]
    assert {o["style"]: len(o["renderings"]) for o in listed} == {"large": 0, "thumb": 3}
    assert manifest.live_keys() >= {r.key for r in manifest.derivatives[1].renderings}


def test_an_unknown_style_or_asset_is_404(
    api: httpx.Client, asset: tuple[str, AssetManifest]
) -> None:
    collection, _ = asset
    assert api.get(f"/v1/assets/{collection}/IMG%209.jpg/styles/huge").status_code == 404
    assert api.get(f"/v1/assets/{collection}/nothing.jpg/styles/thumb").status_code == 404
    assert api.get(f"/v1/assets/{collection}/IMG%209.jpg/styles/Bad!").status_code == 422


def test_another_tenant_and_no_token_learn_nothing(
    api_process: ApiProcess, asset: tuple[str, AssetManifest]
) -> None:
    collection, _ = asset
    path = f"/v1/assets/{collection}/IMG%209.jpg/styles/thumb"
    missing = f"/v1/assets/{collection}/nothing.jpg/styles/thumb"
    with api_process.client(TENANT_B_TOKEN) as other:
        refused, absent = other.get(path), other.get(missing)
    # The same answer as for an asset that does not exist: no Location, no format.
    assert refused.status_code == absent.status_code == 404
    assert "Location" not in refused.headers and "X-Emulsion-Format" not in refused.headers
    assert refused.json()["code"] == absent.json()["code"] == "not_found"
    with httpx.Client(base_url=api_process.url) as anonymous:
        unauthenticated = anonymous.get(path)
    assert unauthenticated.status_code == 401
    assert "Location" not in unauthenticated.headers
