"""The CDP's routes as a bare WSGI layer in front of Flask: read the request, call receive(), answer.

Why not a Flask view: on a single-event POST, Flask and Werkzeug's per-request machinery
(request and app contexts, URL map, hooks, Response object) cost about as much as our whole
receive path after the storage commit. This layer does only what those routes need, and shares
with Flask everything an answer must agree on (observe.py): the request id, the access-log line,
and the JSON body and status of a refusal. Every other path goes on to Flask unchanged.
"""
from __future__ import annotations

import time
from http import HTTPStatus

from werkzeug.exceptions import MethodNotAllowed

from destination.errors import BadRequest, PayloadTooLarge
from destination.intake.pipeline import ROUTES, receive
from destination.ops import logs, observe

_PHRASES = {status.value: f"{status.value} {status.phrase}" for status in HTTPStatus}
# Browser SDKs (analytics.js) post from the customer's pages, another origin. The Tracking API
# routes allow any origin, as Segment's do: a write key in a page is public by design, and it
# can only add events. Webhook routes are server to server and get no CORS headers.
CORS = {"Access-Control-Allow-Origin": "*"}
PREFLIGHT = {"Access-Control-Allow-Methods": "POST", "Access-Control-Max-Age": "86400",
             "Access-Control-Allow-Headers": "Content-Type, Authorization, Content-Encoding, X-Retry-Count"}


class ReceiveRoutes:
    def __init__(self, fallback, runtime):
        self.fallback = fallback  # Flask's wsgi_app
        self.runtime = runtime

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO") or "/"
        route = ROUTES.get(path.rstrip("/") or "/")
        if route is None:
            return self.fallback(environ, start_response)
        started = time.perf_counter()
        request_id = observe.request_id(environ.get("HTTP_X_REQUEST_ID"))
        token = logs.request_id.set(request_id)
        method = environ.get("REQUEST_METHOD", "GET")
        cors = CORS if route.kind == "tracking" else {}
        try:
            if method == "OPTIONS" and cors:
                status, headers, body = 204, PREFLIGHT, b""
            elif method not in route.methods:
                raise MethodNotAllowed(valid_methods=route.methods)
            else:
                status, headers = 200, {}
                body = receive(self.runtime, route, read_body(environ, self.runtime.settings.max_request_bytes),
                               lambda name: environ.get("HTTP_" + name.upper().replace("-", "_")))
        except Exception as error:  # noqa: BLE001 - every failure becomes an answer, as in Flask's handler
            status, body, headers = observe.refusal(error)
        try:
            start_response(_PHRASES.get(status, str(status)), [
                ("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                ("X-Request-Id", request_id), *cors.items(), *headers.items()])
            observe.log_access(method, path, status, started, _declared_length(environ) or 0)
        finally:
            logs.request_id.reset(token)
        return [body]


def read_body(environ, limit: int) -> bytes:
    """The request body, never more than `limit` bytes (413 beyond); chunked bodies are read to the end."""
    stream = environ.get("wsgi.input")
    length = _content_length(environ)
    if length > limit:
        raise PayloadTooLarge(f"the request body is {length} bytes; the limit is {limit}")
    if stream is None:
        return b""
    if length:
        return stream.read(length)
    if environ.get("wsgi.input_terminated"):  # chunked transfer: the server marks where the body ends
        body = stream.read(limit + 1)
        if len(body) > limit:
            raise PayloadTooLarge(f"the request body exceeds the limit of {limit} bytes")
        return body
    return b""


def _content_length(environ) -> int:
    length = _declared_length(environ)
    if length is None:
        raise BadRequest(f"Content-Length {environ.get('CONTENT_LENGTH')!r} is not a number", code="invalid_content_length")
    return length


def _declared_length(environ) -> int | None:
    text = environ.get("CONTENT_LENGTH") or "0"
    return int(text) if text.isascii() and text.isdigit() else None

