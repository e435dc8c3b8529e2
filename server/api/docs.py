"""The OpenAPI document and an offline docs page (Swagger UI assets from a Python package:
schools and operators may have no internet, so no CDN)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import swagger_ui
from aiohttp import web

from server.keys import openapi_key

SWAGGER_STATIC = Path(swagger_ui.__file__).parent / "static"

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Somo API</title>
<link rel="stylesheet" href="/api/docs/static/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="/api/docs/static/swagger-ui-bundle.js"></script>
<script src="/api/docs/init.js"></script></body></html>
"""
INIT = """window.ui = SwaggerUIBundle({url: "/api/v1/openapi.json", dom_id: "#ui", deepLinking: true,
  persistAuthorization: true});
"""


async def openapi_json(request: web.Request) -> web.Response:
    document: dict[str, Any] = request.app[openapi_key]
    return web.Response(text=json.dumps(document), content_type="application/json")


async def docs_page(request: web.Request) -> web.Response:
    return web.Response(text=PAGE, content_type="text/html")


async def docs_init(request: web.Request) -> web.Response:
    return web.Response(text=INIT, content_type="application/javascript")


def add_docs_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/openapi.json", openapi_json)
    app.router.add_get("/api/docs", docs_page)
    app.router.add_get("/api/docs/init.js", docs_init)
    app.router.add_static("/api/docs/static", SWAGGER_STATIC, append_version=True)
