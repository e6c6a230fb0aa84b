"""The JSON answers of kpimon's HTTP API, as the Prometheus HTTP API shapes them."""

from __future__ import annotations

import json

from aiohttp import web


def api_json(doc: object, status: int = 200) -> web.Response:
    """``doc`` as JSON; a NaN or infinity in it is a bug, so it raises instead of writing
    non-standard JSON."""
    return web.json_response(doc, status=status, dumps=_strict_dumps)


def api_error(status: int, error_type: str, message: str) -> web.Response:
    """``{"status": "error", "errorType": ..., "error": ...}`` with HTTP ``status``."""
    return api_json({"status": "error", "errorType": error_type, "error": message}, status)


def _strict_dumps(doc: object) -> str:
    return json.dumps(doc, allow_nan=False)
