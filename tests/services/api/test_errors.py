"""The OpenAPI document tells the truth about errors and schemas.

The codes are read from the source (every `ApiError(...)` and `problem(...)` call and the
handlers' tables), not from a list kept by hand, and compared with the document.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import Any

import pytest

import emulsion_api
from emulsion_api import errors
from emulsion_api.main import GENERIC_CODES, create_app
from emulsion_api.settings import load_api_settings

SOURCE = Path(emulsion_api.__file__).parent
ERROR_CONSTRUCTORS = {"ApiError", "problem"}


def _codes_in(path: Path) -> set[str]:
    """The codes constructed in a module: the string literal given as an error's code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in ERROR_CONSTRUCTORS and len(node.args) >= 2:
                code = node.args[1]
                if isinstance(code, ast.Constant | ast.IfExp):
                    # `"a" if x else "b"`: both are codes it can raise.
                    found |= {
                        str(leaf.value) for leaf in ast.walk(code) if isinstance(leaf, ast.Constant)
                    }
                else:
                    # Only the handlers forward a code made elsewhere (an ApiError's, or
                    # their table's, read below); everywhere else it is written out.
                    assert path.name == "errors.py", ast.unparse(node)
    return found


def _codes_in_source() -> dict[str, set[str]]:
    return {str(path.relative_to(SOURCE)): _codes_in(path) for path in SOURCE.rglob("*.py")}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    saved = dict(os.environ)
    os.environ.update(
        {"NATS_URL": "nats://127.0.0.1:1", "EMULSION_BUCKET": "b", "EMULSION_API_TOKENS": "t"}
    )
    try:
        return create_app(load_api_settings()).openapi()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _operations(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def _documented_codes(operation: dict[str, Any]) -> set[str]:
    codes: set[str] = set()
    for response in operation["responses"].values():
        for content in response.get("content", {}).values():
            schema = content.get("schema", {})
            codes |= set(schema.get("properties", {}).get("code", {}).get("enum", []))
    return codes


def test_the_source_finds_codes() -> None:
    # The scan itself works: these are raised in three different modules.
    found = set().union(*_codes_in_source().values())
    assert {"upload_missing", "too_many_watches", "asset_changed", "body_too_large"} <= found


def test_every_code_raised_is_registered_with_its_status() -> None:
    for module, codes in _codes_in_source().items():
        assert codes <= set(errors.CODES), module


def test_every_code_raised_is_in_the_document(document: dict[str, Any]) -> None:
    raised = set().union(*_codes_in_source().values()) | set(errors._HTTP_CODES.values())
    documented = set().union(*(_documented_codes(op) for _, op in _operations(document)))

    assert raised - documented <= set(GENERIC_CODES), raised - documented
    assert documented <= raised, documented - raised
    for code in GENERIC_CODES:
        assert f"`{code}`" in document["info"]["description"]


def test_each_route_documents_the_codes_its_module_raises(document: dict[str, Any]) -> None:
    by_tag: dict[str, set[str]] = {}
    for _, operation in _operations(document):
        for tag in operation.get("tags", []):
            by_tag.setdefault(tag, set()).update(_documented_codes(operation))
    for module, codes in _codes_in_source().items():
        if module.startswith("routes/") and module != "routes/web.py" and codes:
            tag = module.removeprefix("routes/").removesuffix(".py")
            assert codes <= by_tag[tag], (module, codes - by_tag[tag])


def test_errors_are_problems_with_one_shape_per_status(document: dict[str, Any]) -> None:
    for name, operation in _operations(document):
        for status, response in operation["responses"].items():
            if int(status) >= 400 and name != "GET /readyz":
                assert list(response["content"]) == ["application/problem+json"], (name, status)
                schema = response["content"]["application/problem+json"]["schema"]
                # A Problem, or a Problem with extension members (410: ExpiredIngestProblem).
                [ref] = schema["allOf"]
                model = ref["$ref"].rsplit("/", 1)[1]
                assert (
                    model == "Problem"
                    or "Problem" in str(document["components"]["schemas"][model].get("allOf", ""))
                    or set(document["components"]["schemas"]["Problem"]["properties"])
                    <= set(document["components"]["schemas"][model]["properties"])
                ), (name, status, model)
                codes = schema["properties"]["code"]["enum"]
                assert all(errors.CODES[code].status == int(status) for code in codes), name


def test_response_headers_are_declared(document: dict[str, Any]) -> None:
    for name, operation in _operations(document):
        responses = operation["responses"]
        if "401" in responses:
            assert "WWW-Authenticate" in responses["401"]["headers"], name
        if "429" in responses:
            assert "Retry-After" in responses["429"]["headers"], name
    created = document["paths"]["/v1/ingests"]["post"]["responses"]["202"]["headers"]
    assert {"Location", "Idempotent-Replayed"} <= set(created)
    asset = document["paths"]["/v1/assets/{collection}/{asset}"]["get"]["responses"]
    assert "ETag" in asset["200"]["headers"] and "ETag" in asset["304"]["headers"]


def test_every_operation_has_a_stable_operation_id(document: dict[str, Any]) -> None:
    ids = [operation["operationId"] for _, operation in _operations(document)]
    assert len(ids) == len(set(ids))
    assert "listAssets" in ids and "listIngests" in ids and "followIngest" in ids
    # camelCase names given on purpose, not FastAPI's generated `name_path_method`.
    assert all("_" not in operation_id for operation_id in ids)


def test_every_schema_property_has_a_description_and_an_example(
    document: dict[str, Any],
) -> None:
    missing = [
        f"{name}.{prop}"
        for name, schema in document["components"]["schemas"].items()
        for prop, body in schema.get("properties", {}).items()
        if not body.get("description") or not ("examples" in body or "example" in body)
    ]
    assert missing == []


def test_the_event_stream_events_are_typed(document: dict[str, Any]) -> None:
    content = document["paths"]["/v1/ingests/{name}/events"]["get"]["responses"]["200"]["content"]
    variants = content["text/event-stream"]["itemSchema"]["oneOf"]
    events = {
        v["properties"]["event"]["const"]: v["properties"]["data"]["contentSchema"]["$ref"]
        for v in variants
    }
    assert events == {
        "status": "#/components/schemas/JobSummary",
        "end": "#/components/schemas/JobSummary",
        "deleted": "#/components/schemas/JobDeletedEvent",
        "error": "#/components/schemas/StreamErrorEvent",
    }
    for ref in set(events.values()):
        assert ref.rsplit("/", 1)[1] in document["components"]["schemas"]


def test_the_expired_ingests_example_is_an_expired_ingest_problem(
    document: dict[str, Any],
) -> None:
    from emulsion_api.models import ExpiredIngestProblem

    for path in ("/v1/ingests/{name}", "/v1/ingests/{name}/events"):
        gone = document["paths"][path]["get"]["responses"]["410"]
        example = gone["content"]["application/problem+json"]["example"]
        assert ExpiredIngestProblem.model_validate(example).code == "ingest_expired"
