"""The IngestJob CRD as served by a real kube-apiserver: CRUD, watch, validation, status."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from emulsion_contracts import crd, keys

NAMESPACE = "default"
UPLOAD = "01JDZ8Q6W1B2C3D4E5F6G7H8J9"


def job(name: str, items: int = 1, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": crd.API_VERSION,
        "kind": crd.KIND,
        "metadata": {"name": name},
        "spec": {
            "collection": "gallery-42",
            "items": [
                {
                    "source": f"staging/gallery-42/{UPLOAD}/IMG_{i:04d}.jpg",
                    "asset": f"IMG_{i:04d}.jpg",
                }
                for i in range(items)
            ],
            **spec,
        },
    }


ORIGINAL = keys.original_key("gallery-42", "x.jpg", keys.version_id(UPLOAD, 0), "x.jpg")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def jobs(kube: Any) -> Any:
    return client.CustomObjectsApi(kube)


def create(jobs: Any, body: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = jobs.create_namespaced_custom_object(
        crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL, body
    )
    return created


def test_create_get_list_and_defaults(jobs: Any) -> None:
    name = unique("crud")
    created = create(jobs, job(name, items=3))
    assert created["spec"]["profile"] == "default"  # defaulted by the schema
    fetched = jobs.get_namespaced_custom_object(crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL, name)
    assert fetched["spec"]["items"][2]["asset"] == "IMG_0002.jpg"
    listed = jobs.list_namespaced_custom_object(crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL)
    assert name in {item["metadata"]["name"] for item in listed["items"]}


def test_watch_sees_a_new_job(jobs: Any) -> None:
    name = unique("watched")
    listed = jobs.list_namespaced_custom_object(crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL)
    seen: list[str] = []
    watcher = watch.Watch()

    def follow() -> None:
        for event in watcher.stream(
            jobs.list_namespaced_custom_object,
            crd.GROUP,
            crd.VERSION,
            NAMESPACE,
            crd.PLURAL,
            resource_version=listed["metadata"]["resourceVersion"],
            timeout_seconds=30,
        ):
            if event["object"]["metadata"]["name"] == name:
                seen.append(event["type"])
                watcher.stop()

    follower = threading.Thread(target=follow)
    follower.start()
    create(jobs, job(name))
    follower.join(timeout=35)
    assert seen == ["ADDED"]


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ({"items": []}, "spec.items: Invalid value"),
        (
            {
                "items": [{"source": f"staging/gallery-42/{UPLOAD}/x.jpg", "asset": "x.jpg"}]
                * (crd.MAX_ITEMS + 1)
            },
            "must have at most 2000 items",
        ),
        ({"items": [{"source": "originals/../x.jpg", "asset": "x.jpg"}]}, "spec.items[0].source"),
        # The layout before keys named their collection is never ingested.
        (
            {"items": [{"source": f"staging/{UPLOAD}/x.jpg", "asset": "x.jpg"}]},
            "spec.items[0].source",
        ),
        (
            {"items": [{"source": f"staging/gallery-42/{UPLOAD}/.claim", "asset": "x.jpg"}]},
            "spec.items[0].source",
        ),
        (
            {"items": [{"source": f"staging/gallery-42/{UPLOAD}/x.jpg", "asset": "../x"}]},
            "spec.items[0].asset",
        ),
        ({"collection": "a/b"}, "spec.collection"),
        ({"items": [{"asset": "x.jpg"}]}, "spec.items[0].source: Required value"),
        # A re-render of a stored original (the focal point PATCH) is a job of one item.
        ({"items": [{"source": ORIGINAL, "asset": "x.jpg"}] * 2}, "has one item"),
        (
            {"items": [{"source": ORIGINAL, "asset": "x.jpg", "focalPoint": {"x": 1.5, "y": 0}}]},
            "spec.items[0].focalPoint.x",
        ),
        (
            {"styles": [{"name": "a", "width": 9, "height": 9, "gravity": "faces"}]},
            "gravity applies to fit 'crop' only",
        ),
        (
            {"styles": [{"name": "a", "width": 9, "height": 9, "fit": "crop", "gravity": "up"}]},
            "spec.styles[0].gravity",
        ),
    ],
)
def test_invalid_specs_are_refused_with_422(
    jobs: Any, spec: dict[str, Any], complaint: str
) -> None:
    body = job(unique("invalid"))
    body["spec"].update(spec)
    with pytest.raises(ApiException) as refused:
        create(jobs, body)
    assert refused.value.status == 422
    assert complaint in str(refused.value.body)


def test_a_one_item_re_render_with_a_focal_point_and_gravity_is_stored(jobs: Any) -> None:
    body = job(unique("rerender"))
    body["spec"]["items"] = [
        {"source": ORIGINAL, "asset": "x.jpg", "focalPoint": {"x": 0.25, "y": 1}}
    ]
    body["spec"]["styles"] = [
        {"name": "thumb", "width": 100, "height": 100, "fit": "crop", "gravity": "smart"}
    ]
    created = create(jobs, body)
    assert created["spec"]["items"][0]["focalPoint"] == {"x": 0.25, "y": 1}
    assert created["spec"]["styles"][0]["gravity"] == "smart"


def test_largest_job_the_schema_allows_is_stored(jobs: Any) -> None:
    """2,000 items with the longest keys fit (a 1,361-image gallery is one job)."""
    name = unique("largest")
    longest = "n" * (keys.SAFE_NAME_MAX - 4) + ".jpg"
    body = job(name)
    body["spec"]["items"] = [
        {
            "source": keys.staging_key("c" * keys.COLLECTION_MAX, keys.new_ulid(), longest),
            "asset": f"{i:04d}{longest[4:]}",
        }
        for i in range(crd.MAX_ITEMS)
    ]
    created = create(jobs, body)
    assert len(created["spec"]["items"]) == crd.MAX_ITEMS


def test_spec_is_immutable(jobs: Any) -> None:
    name = unique("immutable")
    create(jobs, job(name))
    with pytest.raises(ApiException) as refused:
        jobs.patch_namespaced_custom_object(
            crd.GROUP,
            crd.VERSION,
            NAMESPACE,
            crd.PLURAL,
            name,
            {"spec": {"collection": "elsewhere"}},
        )
    assert refused.value.status == 422
    assert "spec is immutable" in str(refused.value.body)


def test_status_is_only_written_through_the_status_subresource(
    jobs: Any,
) -> None:
    name = unique("status")
    body = job(name)
    body["status"] = {"phase": "Succeeded"}
    created = create(jobs, body)
    assert "status" not in created or "phase" not in created["status"]

    jobs.patch_namespaced_custom_object(
        crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL, name, {"status": {"phase": "Failed"}}
    )
    main = jobs.get_namespaced_custom_object(crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL, name)
    assert main.get("status", {}).get("phase") is None

    jobs.patch_namespaced_custom_object_status(
        crd.GROUP,
        crd.VERSION,
        NAMESPACE,
        crd.PLURAL,
        name,
        {"status": {"phase": "Processing", "total": 1}},
    )
    patched = jobs.get_namespaced_custom_object(crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL, name)
    assert patched["status"] == {"phase": "Processing", "total": 1}

    with pytest.raises(ApiException) as refused:
        jobs.patch_namespaced_custom_object_status(
            crd.GROUP, crd.VERSION, NAMESPACE, crd.PLURAL, name, {"status": {"phase": "Done"}}
        )
    assert refused.value.status == 422
