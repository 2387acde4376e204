"""`POST /v1/uploads`: presigned POST forms for direct uploads into the staging area."""

from __future__ import annotations

from fastapi import APIRouter, status

from emulsion_api import jobs
from emulsion_api.deps import Principal, PrincipalDep, ServicesDep
from emulsion_api.errors import ApiError, ErrorDetail, problems
from emulsion_api.models import (
    Present,
    PresentRequest,
    Upload,
    UploadBatch,
    UploadBatchRequest,
    UploadFile,
    UploadRequest,
)
from emulsion_api.store import Store
from emulsion_contracts import keys

router = APIRouter(prefix="/v1/uploads", tags=["uploads"])


def _check_sizes(files: list[UploadFile], limit: int, single: bool) -> None:
    too_large = [
        ErrorDetail(
            field="body.size" if single else f"body.files.{index}.size",
            message=f"{file.size} bytes; limit {limit}",
        )
        for index, file in enumerate(files)
        if file.size > limit
    ]
    if too_large:
        raise ApiError(422, "file_too_large", f"files may be at most {limit} bytes", too_large)


def _presign(store: Store, file: UploadFile, collection: str, caller: Principal) -> Upload:
    upload_id = keys.new_ulid()
    key = keys.staging_key(collection, upload_id, file.filename)
    asset = jobs.default_asset(file.filename)
    form = store.presign_post(
        key,
        file.content_type,
        file.size,
        asset,
        collection=collection,
        owner=caller.owner,
        filename=file.filename,
    )
    return Upload(
        upload_id=upload_id,
        key=key,
        asset=asset,
        url=form.url,
        fields=form.fields,
        expires_at=form.expires_at,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=Upload | UploadBatch,
    operation_id="createUploads",
    responses=problems(
        "unauthorized",
        "forbidden",
        "malformed_json",
        "body_too_large",
        "invalid_request",
        "too_many_items",
        "file_too_large",
        "rate_limited",
        "internal",
    ),
)
async def create_uploads(
    body: UploadRequest | UploadBatchRequest, services: ServicesDep, caller: PrincipalDep
) -> Upload | UploadBatch:
    """One presigned POST per file, each for exactly one staging key of `collection`, the
    declared type (an accepted format) and the declared size; `{collection, files: [...]}`
    asks for many at once. The form records the collection and the caller's identity with
    the object, and only an ingest into that collection accepts the upload."""
    settings = services.settings
    caller.check_write(body.collection)
    files: list[UploadFile] = body.files if isinstance(body, UploadBatchRequest) else [body]
    if len(files) > settings.max_upload_batch:
        raise ApiError(
            422, "too_many_items", f"{len(files)} files; at most {settings.max_upload_batch}"
        )
    _check_sizes(files, settings.upload_max_bytes, isinstance(body, UploadRequest))
    services.limiter.presigns(caller.owner, caller.limits, len(files))
    if isinstance(body, UploadRequest):
        return _presign(services.store, body, body.collection, caller)
    # Signing is CPU work (HMACs); thousands of forms must not stall the event loop.
    uploads = await services.store.run(
        lambda: [_presign(services.store, f, body.collection, caller) for f in files]
    )
    return UploadBatch(uploads=uploads)


@router.post(
    "/present",
    response_model=Present,
    operation_id="uploadsPresent",
    responses=problems(
        "unauthorized",
        "malformed_json",
        "body_too_large",
        "invalid_request",
        "too_many_items",
        "unavailable",
        "internal",
    ),
)
async def uploads_present(
    body: PresentRequest, services: ServicesDep, caller: PrincipalDep
) -> Present:
    """Which of these staging keys hold an upload not yet ingested. A client resuming after
    a crash asks this for the uploads it had in flight: one that reached the store is not
    sent again. Only keys of collections the token may use are looked up; any other key
    (another tenant's, or of the old layout) is reported as not present without a read,
    so the answer says nothing about other tenants' uploads."""
    limit = services.settings.max_upload_batch
    if len(body.keys) > limit:
        raise ApiError(422, "too_many_items", f"{len(body.keys)} keys; at most {limit}")
    own = list(dict.fromkeys(key for key in body.keys if caller.may_use_upload(key)))
    missing = set(await services.store.missing(own)) if own else set()
    found = set(own) - missing
    return Present(present=[key for key in body.keys if key in found])
