"""One JSON error shape for every failure, with stable machine-readable `code` strings.

Clients branch on `code`, never on `message` (which is for people and may change).
Every route declares the errors it can answer with, so the OpenAPI document is true.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match


class ErrorDetail(BaseModel):
    # Where in the request the problem is, e.g. "body.items.3.asset"; None for the whole.
    field: str | None = None
    message: str


class Error(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail] = []


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[ErrorDetail] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = dict(headers or {})


def _response(status: int, error: Error, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error.model_dump(mode="json"), status_code=status, headers=headers)


def error_response(error: ApiError) -> JSONResponse:
    return _response(
        error.status,
        Error(code=error.code, message=error.message, details=error.details),
        error.headers,
    )


# The shape FastAPI's `responses=` takes; routes merge these to document their errors.
Responses = dict[int | str, dict[str, Any]]


def _documented(description: str) -> dict[str, Any]:
    return {"model": Error, "description": description}


UNAUTHORIZED: Responses = {401: _documented("Missing or unknown bearer token (`unauthorized`)")}
FORBIDDEN: Responses = {
    403: _documented("The token may not change this collection (`forbidden`)"),
}
INVALID: Responses = {
    422: _documented("The request breaks a rule; `details` says which (`invalid_request`, ...)"),
}
INVALID_BODY: Responses = {
    400: _documented("Malformed JSON (`malformed_json`)"),
    413: _documented("Request body over the size limit (`body_too_large`)"),
    **INVALID,
}
NOT_FOUND: Responses = {404: _documented("No such resource (`not_found`)")}
CONFLICT: Responses = {409: _documented("The request conflicts with the resource's state")}
BACKENDS: Responses = {
    429: _documented("The apiserver is throttling; retry after `Retry-After` (`overloaded`)"),
    503: _documented("The apiserver, object store or message bus is unreachable (`unavailable`)"),
}


def _field(location: tuple[Any, ...] | list[Any]) -> str:
    return ".".join(str(part) for part in location)


async def _api_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return error_response(error)


async def _validation_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = list(error.errors())
    if any(problem.get("type") == "json_invalid" for problem in problems):
        return _response(400, Error(code="malformed_json", message="the body is not valid JSON"))
    # Only the location and pydantic's message: never echo the (possibly hostile) input.
    details = [
        ErrorDetail(field=_field(problem.get("loc", ())), message=str(problem.get("msg", "")))
        for problem in problems
    ]
    return _response(
        422, Error(code="invalid_request", message="the request is invalid", details=details)
    )


_HTTP_CODES = {
    400: "bad_request",
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
    return _response(error.status_code, Error(code=code, message=str(error.detail)), headers)


async def _unexpected(request: Request, error: Exception) -> JSONResponse:
    return _response(500, Error(code="internal", message="internal error"))


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
