"""What every HTTP answer shares, whichever layer serves it (Flask, or the bare receive routes):
the request id, the one access-log line, and the JSON body of a refused request."""
from __future__ import annotations

import logging
import os
import re
import time

import orjson
from werkzeug.exceptions import HTTPException

from destination.errors import RequestError
from destination.ops import metrics

log = logging.getLogger("destination.app")
access = logging.getLogger("destination.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
UNLOGGED_PATHS = ("/healthz", "/metrics")  # probes and scrapes would drown the access log


def request_id(offered: str | None) -> str:
    """The platform's X-Request-Id if it is sane, so logs join up across hops; else a new one."""
    return offered if offered and _REQUEST_ID.match(offered) else os.urandom(16).hex()  # as random as uuid4, without the object


def log_access(method: str, path: str, status: int, started: float, bytes_in: int) -> None:
    if path not in UNLOGGED_PATHS:
        access.info("%s %s %s", method, path, status, extra={"fields": {
            "status": status, "ms": round((time.perf_counter() - started) * 1000, 2), "bytes_in": bytes_in}})


def refusal(error: Exception) -> tuple[int, bytes, dict]:
    """(status, JSON body, headers) for a request answered with an error; counted by code.

    RequestError says its own status and code; an HTTP error from the framework (404, 405, 413)
    keeps its status with a code made from its name; anything else is our bug: 500, logged, and
    Retry-After, because nothing was accepted and the sender should try again."""
    headers = {}
    if isinstance(error, RequestError):
        status, body = error.status, error.body()
        if error.retry_after:
            headers["Retry-After"] = str(error.retry_after)
    elif isinstance(error, HTTPException):
        status = error.code or 500
        body = {"code": (error.name or "error").lower().replace(" ", "_"), "message": error.description or error.name}
        allowed = getattr(error, "valid_methods", None)
        if allowed:
            headers["Allow"] = ", ".join(allowed)
    else:
        log.error("unhandled error", exc_info=error)
        status, headers = 500, {"Retry-After": "5"}
        body = {"code": "internal_error", "message": "internal error; nothing was accepted, retry later"}
    metrics.REQUESTS_REFUSED.labels(body["code"]).inc()
    return status, orjson.dumps(body), headers
