"""Every error the service raises, each saying whether the sender should retry.

Three families:
- `RequestError`: answered to the HTTP sender. `retryable` picks 4xx (permanent: the sender must
  not retry, RudderStack would block the user's later events behind a 5xx) or 429/5xx (transient).
- `EventRefused`: one event cannot become a usage event. It is set aside in the dead-letter store
  with the reason and the request goes on; replaying it after a mapping fix is the remedy.
- `ConfigError`: a setting or mapping is wrong. It stops startup or a save, naming the location.
Delivery outcomes from Metronome are data, not exceptions: see worker/retry.py.
"""
from __future__ import annotations


class RequestError(Exception):
    """A whole request is answered with this status and a `{"code", "message"}` body."""

    status = 400
    code = "bad_request"
    retryable = False

    def __init__(self, message: str, *, code: str | None = None, retry_after: int | None = None):
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.retry_after = retry_after

    def body(self) -> dict:
        return {"code": self.code, "message": self.message}


class BadRequest(RequestError):
    """The request can never succeed as sent (malformed JSON, wrong shape)."""


class InvalidMapping(BadRequest):
    """A mapping document failed validation; `errors` holds one `location: message` line each."""

    code = "invalid_mapping"

    def __init__(self, errors: list[str]):
        super().__init__(f"the mapping is invalid ({len(errors)} problem(s)); nothing was saved")
        self.errors = errors

    def body(self) -> dict:
        return {**super().body(), "errors": self.errors}


class Unauthorized(RequestError):
    status = 401
    code = "unauthorized"


class PayloadTooLarge(RequestError):
    status = 413
    code = "payload_too_large"


class NotFound(RequestError):
    status = 404
    code = "not_found"


class Conflict(RequestError):
    """The thing changed since the client read it (another admin saved first): reload and redo."""

    status = 409
    code = "conflict"


class QueueUnavailable(RequestError):
    """The durable store cannot be written: nothing was accepted, so the sender must retry."""

    status = 503
    code = "queue_unavailable"
    retryable = True


class EventRefused(Exception):
    """One event cannot be mapped or fails the ingest contract; it goes to the dead-letter store."""

    retryable = False

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ConfigError(Exception):
    """A setting or mapping is invalid; the message names where."""


def first_line(exc: BaseException, limit: int = 200) -> str:
    """An error's first line, short enough for an answer, a dead letter or a terminal."""
    return str(exc).splitlines()[0][:limit] if str(exc).strip() else type(exc).__name__
