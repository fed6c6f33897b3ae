"""What every emulated Metronome route shares: the ledger, auth, the body, and exact JSON answers."""
from __future__ import annotations

from flask import Response, current_app, request

from destination.payload import exact
from destination.sandbox.ledger import Ledger
from destination.sandbox.spec import ApiError, check_body


def ledger() -> Ledger:
    return current_app.extensions["sandbox"]


def authorize() -> None:
    """Bearer auth as Metronome answers it: 401 without a token, 403 with one it does not know."""
    auth = request.headers.get("Authorization", "")
    if not auth.startswith("Bearer "):
        raise ApiError(401, "Unauthorized")
    if auth[7:] not in ledger().tokens:
        raise ApiError(403, "Unauthorized")


def body(operation: str) -> dict:
    """The request's JSON, checked against the operation's schema in Metronome's spec."""
    try:
        value = exact.loads(request.get_data() or b"null")
    except ValueError:
        raise ApiError(400, "request body is not valid JSON") from None
    return check_body(operation, value)


def ok(payload, status: int = 200) -> Response:
    """JSON with every Decimal written exactly, as a number."""
    return Response(exact.dumps(payload), status, content_type="application/json")


def flag(name: str) -> bool:
    value = request.args.get(name, "false").lower()
    if value not in ("true", "false"):
        raise ApiError(400, f"{name} must be true or false, not {request.args.get(name)!r}")
    return value == "true"


def created(operation: str, make) -> Response:
    """Create one object from the body with `make(ledger, fields)`; answer `{"data": {"id"}}`."""
    fields = body(operation)
    fields.pop("id", None)  # ids are chosen here; only a seed file may fix one
    with ledger().lock:
        return ok({"data": {"id": make(ledger(), fields).id}})
