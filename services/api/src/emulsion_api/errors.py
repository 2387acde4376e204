"""Every failure as an RFC 9457 problem (`application/problem+json`) with a stable `code`.

Clients branch on `code`, never on `detail` (which is for people and may change). Every
code the API can answer with is registered in `CODES` with its status and title, and
`ErrorCode` is the type of that name, so an unregistered code does not type-check.
Routes document their errors with `problems(...)`, naming the codes they can answer
with: the OpenAPI document then lists them per route, one schema per status code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry import trace
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
# A problem type is a URI naming the code; it is not meant to be fetched.
TYPE_PREFIX: Final = "urn:emulsion:problem:"

ErrorCode = Literal[
    "malformed_json",
    "unauthorized",
    "forbidden",
    "priority_not_allowed",
    "not_found",
    "ingest_expired",
    "method_not_allowed",
    "asset_changed",
    "precondition_failed",
    "body_too_large",
    "job_too_large",
    "invalid_request",
    "invalid_cursor",
    "ingest_running",
    "upload_missing",
    "idempotency_key_reused",
    "invalid_idempotency_key",
    "unknown_profile",
    "too_many_items",
    "file_too_large",
    "duplicate_asset",
    "duplicate_upload",
    "overloaded",
    "too_many_watches",
    "rate_limited",
    "internal",
    "unavailable",
    "http_error",
]


@dataclass(frozen=True)
class CodeInfo:
    status: int
    title: str


CODES: Final[dict[ErrorCode, CodeInfo]] = {
    "malformed_json": CodeInfo(400, "The body is not valid JSON"),
    "unauthorized": CodeInfo(401, "A valid bearer token is required"),
    "forbidden": CodeInfo(403, "The token may not change this collection"),
    # `priority: interactive` without `interactive: true` in the token's limits.
    "priority_not_allowed": CodeInfo(403, "The token may not ask for this priority"),
    "not_found": CodeInfo(404, "No such resource"),
    "method_not_allowed": CodeInfo(405, "Method not allowed"),
    "ingest_expired": CodeInfo(410, "The ingest finished and expired; what is still known"),
    "ingest_running": CodeInfo(409, "The ingest has not finished yet"),
    "asset_changed": CodeInfo(409, "A new version of the asset went live meanwhile"),
    "precondition_failed": CodeInfo(412, "If-Match names another version of the asset"),
    "body_too_large": CodeInfo(413, "The request body is over the size limit"),
    "job_too_large": CodeInfo(413, "An IngestJob of these items is over what etcd stores"),
    "invalid_request": CodeInfo(422, "The request is invalid"),
    "invalid_cursor": CodeInfo(422, "The page cursor is not one this API gave out"),
    "upload_missing": CodeInfo(422, "An upload is not in the staging area"),
    "idempotency_key_reused": CodeInfo(422, "Idempotency-Key reused with another body"),
    "invalid_idempotency_key": CodeInfo(422, "Idempotency-Key is malformed"),
    "unknown_profile": CodeInfo(422, "No such processing profile"),
    "too_many_items": CodeInfo(422, "Too many items in one request"),
    "file_too_large": CodeInfo(422, "A file is over the upload size limit"),
    "duplicate_asset": CodeInfo(422, "An asset appears twice in one request"),
    "duplicate_upload": CodeInfo(422, "An upload appears twice in one request"),
    "overloaded": CodeInfo(429, "The apiserver is throttling requests"),
    "too_many_watches": CodeInfo(429, "Too many open watches"),
    # A per-token limit (limits.py); the problem's `limit` names which.
    "rate_limited": CodeInfo(429, "A limit of this token is reached"),
    "internal": CodeInfo(500, "Internal error"),
    "unavailable": CodeInfo(503, "A backend is unavailable"),
    # Any other status Starlette answers with (e.g. 406); not raised by the API itself.
    "http_error": CodeInfo(400, "HTTP error"),
}

# Response headers that go with some statuses, declared in the document.
_STATUS_HEADERS: Final[dict[int, dict[str, dict[str, Any]]]] = {
    401: {
        "WWW-Authenticate": {
            "description": "The authentication scheme to use: `Bearer`.",
            "schema": {"type": "string", "example": "Bearer"},
        }
    },
    429: {
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "schema": {"type": "string", "example": "1"},
        }
    },
}


class ErrorDetail(BaseModel):
    field: str | None = Field(
        default=None,
        description="Where in the request the problem is; null for the request as a whole.",
        examples=["body.items.3.asset"],
    )
    message: str = Field(
        description="What is wrong there, for people.",
        examples=["asset 'a.jpg' is also item 0"],
    )


class Problem(BaseModel):
    """An RFC 9457 problem; `code` is the stable, machine-readable name of the error."""

    type: str = Field(
        description="A URI naming the problem type: `urn:emulsion:problem:<code>`.",
        examples=["urn:emulsion:problem:upload_missing"],
    )
    title: str = Field(
        description="A short summary of the problem type; the same for every occurrence.",
        examples=["An upload is not in the staging area"],
    )
    status: int = Field(description="The HTTP status code.", examples=[422])
    detail: str = Field(
        description="This occurrence explained, for people (may change; never branch on it).",
        examples=["1 upload(s) not found in the staging area"],
    )
    instance: str | None = Field(
        default=None,
        description="The request path this problem occurred on.",
        examples=["/v1/ingests"],
    )
    code: str = Field(
        description="The stable error code clients branch on.", examples=["upload_missing"]
    )
    trace_id: str | None = Field(
        default=None,
        description="The request's OpenTelemetry trace id (32 hex digits), to find it in logs.",
        examples=["4bf92f3577b34da6a3ce929d0e0e4736"],
    )
    limit: str | None = Field(
        default=None,
        description=(
            "For `rate_limited`: the token's limit that was reached (`presigns_per_second`, "
            "`notifies_per_second`, `items_in_flight` or `watches`); null otherwise."
        ),
        examples=["notifies_per_second"],
    )
    errors: list[ErrorDetail] = Field(
        default=[],
        description="The individual problems, for a request with several.",
        examples=[
            [
                {
                    "field": "body.items",
                    "message": "staging/holiday-2026/01J.../a.jpg was not uploaded",
                }
            ]
        ],
    )


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: ErrorCode,
        message: str,
        details: list[ErrorDetail] | None = None,
        headers: Mapping[str, str] | None = None,
        limit: str | None = None,
        extensions: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.limit = limit
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = dict(headers or {})
        # RFC 9457 extension members: more of the problem's body (e.g. an expired
        # ingest's summary), documented by the route's problem model.
        self.extensions = dict(extensions or {})


def _trace_id() -> str | None:
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def problem(
    status: int,
    code: ErrorCode,
    detail: str,
    instance: str | None = None,
    errors: list[ErrorDetail] | None = None,
    limit: str | None = None,
) -> Problem:
    return Problem(
        limit=limit,
        type=TYPE_PREFIX + code,
        title=CODES[code].title,
        status=status,
        detail=detail,
        instance=instance,
        code=code,
        trace_id=_trace_id(),
        errors=errors or [],
    )


def problem_response(
    problem: Problem,
    headers: Mapping[str, str] | None = None,
    extensions: Mapping[str, Any] | None = None,
) -> JSONResponse:
    return JSONResponse(
        # `limit` only where it applies, so other problems read as before.
        {
            **problem.model_dump(mode="json", exclude={"limit"} if problem.limit is None else None),
            **(extensions or {}),
        },
        status_code=problem.status,
        headers=headers,
        media_type=PROBLEM_MEDIA_TYPE,
    )


def error_response(error: ApiError, instance: str | None = None) -> JSONResponse:
    found = problem(error.status, error.code, error.message, instance, error.details, error.limit)
    return problem_response(found, error.headers, error.extensions)


# The shape FastAPI's `responses=` takes.
Responses = dict[int | str, dict[str, Any]]


# What a route that reads a job's or a batch's status and records can answer besides its
# 200 (the job listing and a followed status add their own).
JOB_READ_PROBLEMS: tuple[ErrorCode, ...] = (
    "unauthorized",
    "not_found",
    "invalid_request",
    "overloaded",
    "unavailable",
    "internal",
)


def problems(
    *codes: ErrorCode,
    models: Mapping[int, type[Problem]] | None = None,
    examples: Mapping[int, dict[str, Any]] | None = None,
) -> Responses:
    """The error responses of a route that can answer with `codes`: one per status, whose
    schema is `Problem` (or the status' model in `models`, a Problem with extension
    members) with `code` limited to the codes of that status."""
    by_status: dict[int, list[ErrorCode]] = {}
    for code in codes:
        by_status.setdefault(CODES[code].status, []).append(code)
    documented: Responses = {}
    for status, listed in sorted(by_status.items()):
        names = ", ".join(f"`{code}` ({CODES[code].title.lower()})" for code in listed)
        model = (models or {}).get(status, Problem)
        documented[status] = {
            "model": model,
            "description": f"Problem: {names}",
            "x-codes": sorted(set(listed)),
            "x-model": model.__name__,
        }
        if status in (examples or {}):
            documented[status]["x-example"] = (examples or {})[status]
        if status in _STATUS_HEADERS:
            documented[status]["headers"] = _STATUS_HEADERS[status]
    return documented


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """Rewrite the generated document's error responses: their content is
    `application/problem+json`, and `code` is an enum of the codes the route names."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                if not status.isdigit() or int(status) < 400:
                    continue
                codes = response.pop("x-codes", None)
                model = response.pop("x-model", "Problem")
                example = response.pop("x-example", None)
                if codes is None:
                    continue  # not a problem (e.g. /readyz answers 503 with its checks)
                problem_schema = {
                    "allOf": [{"$ref": f"#/components/schemas/{model}"}],
                    "properties": {"code": {"enum": codes}},
                }
                content: dict[str, Any] = {"schema": problem_schema}
                if example is not None:
                    content["example"] = example
                response["content"] = {PROBLEM_MEDIA_TYPE: content}
    return schema


def _field(location: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in location)


async def _api_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return error_response(error, request.url.path)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems_found = list(error.errors())
    path = request.url.path
    if any(found.get("type") == "json_invalid" for found in problems_found):
        return problem_response(problem(400, "malformed_json", "the body is not valid JSON", path))
    # Only the location and pydantic's message: never echo the (possibly hostile) input.
    details = [
        ErrorDetail(field=_field(found.get("loc", ())), message=str(found.get("msg", "")))
        for found in problems_found
    ]
    return problem_response(
        problem(422, "invalid_request", "the request is invalid", path, details)
    )


_HTTP_CODES: Final[dict[int, ErrorCode]] = {
    # FastAPI's only 400 is a body it cannot parse (not UTF-8, say): malformed, as bad JSON.
    400: "malformed_json",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}


def _allowed_methods(request: Request) -> str:
    # Starlette names only the first route matching the path, but GET and DELETE on an
    # asset are two routes: `Allow` must list what every route of the path accepts.
    methods: set[str] = set()
    for route in request.app.routes:
        match, _ = route.matches({**request.scope, "method": ""})
        if match is not Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


async def _http_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    code = _HTTP_CODES.get(error.status_code, "http_error")
    headers = dict(error.headers or {})
    if error.status_code == 405:
        headers["Allow"] = _allowed_methods(request)
    found = problem(error.status_code, code, str(error.detail), request.url.path)
    return problem_response(found, headers)


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    return problem_response(problem(500, "internal", "internal error", request.url.path))


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
