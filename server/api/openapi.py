"""The OpenAPI 3.1 document, generated from the declared operations and their schemas."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from server.api.idempotency import KEY_PATTERN_TEXT
from server.api.registry import JSON_TYPE, PUBLIC, Api, Operation

PROBLEM_TYPE = "application/problem+json"


class Problem(BaseModel):
    """RFC 9457 problem details, the body of every error."""

    type: str
    title: str
    status: int
    detail: str
    code: str = Field(description="Stable machine-readable error code.")
    instance: str
    request_id: str | None = None
    errors: list[dict[str, Any]] | None = Field(default=None, description="Field-level validation errors.")


def _query_parameters(model: type[BaseModel], schema: dict[str, Any]) -> list[dict[str, Any]]:
    params = []
    properties = schema.get("properties", {})
    required = set(schema.get("required", []))
    for name, prop in properties.items():
        param: dict[str, Any] = {"name": name, "in": "query", "required": name in required, "schema": prop}
        if "description" in prop:
            param["description"] = prop["description"]
        params.append(param)
    return params


def build_openapi(apis: Iterable[Api], *, prefix: str, title: str, version: str, server_url: str) -> dict[str, Any]:
    apis = list(apis)
    operations = [(api, op) for api in apis for op in api.operations]
    models: set[type[BaseModel]] = {Problem}
    for _, op in operations:
        models.update(m for m in (op.body, op.response) if m is not None)
    mode: Literal["validation"] = "validation"
    keyed = sorted(((m, mode) for m in models), key=lambda item: item[0].__name__)
    mapping, defs = models_json_schema(keyed, ref_template="#/components/schemas/{model}")
    components: dict[str, Any] = dict(defs.get("$defs", {}))

    def ref(model: type[BaseModel]) -> dict[str, Any]:
        return mapping[(model, "validation")]

    paths: dict[str, dict[str, Any]] = {}
    for api, op in operations:
        base = prefix if api.prefix is None else api.prefix
        paths.setdefault(base + op.path, {})[op.method.lower()] = _operation(op, ref)
    security_schemes = {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "servers": [{"url": server_url}],
        "tags": [{"name": api.tag, "description": api.description} for api in apis],
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": security_schemes},
    }


def _path_schema(name: str) -> dict[str, Any]:
    # Ids are UUIDs; anything else in their place is answered 404, like a missing row.
    return {"type": "string", "format": "uuid"} if name.endswith("_id") else {"type": "string"}


def _operation(op: Operation, ref: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": op.tags,
    }
    if op.description:
        spec["description"] = op.description
    parameters: list[dict[str, Any]] = [
        {"name": name, "in": "path", "required": True, "schema": _path_schema(name)} for name in op.path_params
    ]
    if op.query is not None:
        parameters += _query_parameters(
            op.query, op.query.model_json_schema(ref_template="#/components/schemas/{model}")
        )
    if op.idempotent:
        parameters.append(
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "description": "Retry safely: the same key and body replay the stored response.",
                "schema": {"type": "string", "pattern": KEY_PATTERN_TEXT},
            }
        )
    if parameters:
        spec["parameters"] = parameters
    if op.body is not None:
        # A body whose fields are all optional (a PATCH) may be left out: it changes nothing.
        required = any(field.is_required() for field in op.body.model_fields.values())
        spec["requestBody"] = {"required": required, "content": {JSON_TYPE: {"schema": ref(op.body)}}}
    responses: dict[str, Any] = {}
    if op.status == 204 or (op.response is None and op.content_type == JSON_TYPE):
        responses[str(op.status if op.status != 200 else 204)] = {"description": "Done."}
    elif op.content_type == JSON_TYPE and op.response is not None:
        responses[str(op.status)] = {"description": "Success.", "content": {JSON_TYPE: {"schema": ref(op.response)}}}
    else:
        responses[str(op.status)] = {
            "description": "Success.",
            "content": {op.content_type: {"schema": {"type": "string", "format": "binary"}}},
        }
    for status, description in op.extra_responses.items():
        responses[str(status)] = {"description": description}
    responses["default"] = {
        "description": "An error, as problem details.",
        "content": {PROBLEM_TYPE: {"schema": ref(Problem)}},
    }
    spec["responses"] = responses
    if op.auth != PUBLIC:
        spec["security"] = [{"bearer": []}]
    return spec
