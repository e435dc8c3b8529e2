"""The OpenAPI document and the offline docs page."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from server.api import PREFIX, all_apis
from tests.api.conftest import World


async def test_openapi_document_lists_every_operation(world: World) -> None:
    response = await world.client.get("/api/v1/openapi.json")
    assert response.status == 200
    document: dict[str, Any] = await response.json()
    assert document["openapi"] == "3.1.0"
    declared = {
        ((PREFIX if api.prefix is None else api.prefix) + op.path, op.method.lower())
        for api in all_apis()
        for op in api.operations
    }
    listed = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert declared == listed
    token_op = document["paths"]["/api/v1/auth/token"]["post"]
    assert token_op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/TokenRequest")
    assert "security" not in token_op  # public
    assert document["paths"]["/api/v1/courses"]["get"]["security"] == [{"bearer": []}]
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            assert op["responses"]["default"]["content"]["application/problem+json"], (path, method)
            for ref in _refs(op):
                assert ref.removeprefix("#/components/schemas/") in document["components"]["schemas"], ref


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for value in node.values() for r in _refs(value)]
    if isinstance(node, list):
        return [r for value in node for r in _refs(value)]
    return []


async def test_docs_page_is_served_without_a_cdn(world: World) -> None:
    client: TestClient = world.client
    page = await client.get("/api/docs")
    html = await page.text()
    assert page.status == 200 and "swagger-ui-bundle.js" in html
    assert "http://" not in html and "https://" not in html  # every asset is ours
    bundle = await client.get("/api/docs/static/swagger-ui-bundle.js")
    assert bundle.status == 200 and len(await bundle.read()) > 100_000
    assert (await client.get("/api/docs/init.js")).status == 200
