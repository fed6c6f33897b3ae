"""The admin web page: one HTML file, one script, one stylesheet; no build step.

The page itself holds no data. Everything it shows or changes goes through the /admin JSON API
with the admin token the user types in (kept in the tab's sessionStorage and sent as a Bearer
header), so the page is exactly as protected as the API. A strict Content-Security-Policy allows
only our own script, and the script writes event data with textContent, never as HTML.
"""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort

blueprint = Blueprint("admin_page", __name__, url_prefix="/admin/ui")
ASSETS = Path(__file__).resolve().parent / "ui"
TYPES = {"index.html": "text/html; charset=utf-8", "app.js": "text/javascript; charset=utf-8",
         "delivery.js": "text/javascript; charset=utf-8",
         "style.css": "text/css; charset=utf-8"}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@blueprint.get("/", strict_slashes=False)
def page():
    return _asset("index.html")


@blueprint.get("/<name>")
def asset(name: str):
    if name not in TYPES:
        abort(404)
    return _asset(name)


def _asset(name: str) -> Response:
    return Response((ASSETS / name).read_bytes(), 200, headers=HEADERS, content_type=TYPES[name])
