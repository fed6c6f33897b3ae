"""Structured logs: one JSON object per line, with the request id, and no secret ever written.

Redaction happens on the finished line (message, arguments and traceback together), so a token
cannot slip through a format argument or an exception's text. Known secret values are masked,
and so is anything after `Bearer`/`Basic` or in an Authorization header or URL password.
"""
from __future__ import annotations

import contextvars
import functools
import logging
import re
import sys
import time
from urllib.parse import urlparse

import orjson

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

MASK = "[redacted]"
_CREDENTIALS = [  # (keyword, pattern): a pattern can only match where its keyword appears
    ("bearer", re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+")),
    ("basic", re.compile(r"(?i)(\bbasic\s+)[A-Za-z0-9+/]{8,}={0,2}")),
    ("authorization", re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\n,}]+")),
]
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)[^@\s]+@")
_secrets: list[str] = []


def secrets_of(settings) -> list[str]:
    """Every secret value a log line must never show, from the settings marked secret."""
    from destination.config import SETTINGS

    found = []
    for setting in SETTINGS:
        value = getattr(settings, setting.name, None) if setting.secret else None
        if isinstance(value, dict):
            found.extend(value)  # {secret: label}
        elif isinstance(value, str) and value:
            found.append(value)
            password = urlparse(value).password if "://" in value else None
            if password:
                found.append(password)
    return found


def redact(text: str) -> str:
    """Mask known secrets and anything that looks like a credential.

    Every line passes through here, so the patterns run only where their keyword appears: for
    ASCII text, lower() is exactly the case-insensitivity the patterns use; other text (where
    IGNORECASE also folds characters such as U+017F) always gets every pattern."""
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    if "://" in text:
        text = _URL_PASSWORD.sub(r"\1" + MASK + "@", text)
    lowered = text.lower() if text.isascii() else None
    for keyword, pattern in _CREDENTIALS:
        if lowered is None or keyword in lowered:
            text = pattern.sub(r"\1" + MASK, text)
    return text


@functools.lru_cache(maxsize=4)
def _second(epoch_s: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_s))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": f"{_second(int(record.created))}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        rid = request_id.get()
        if rid:
            line["request_id"] = rid
        line.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return redact(orjson.dumps(line, default=str).decode())


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        rid = request_id.get()
        return redact(f"{text} request_id={rid}" if rid else text)


def configure(log_format: str = "JSON", level: str = "INFO", secrets: list[str] = ()) -> None:
    """Route every logger (ours, gunicorn's, the libraries') through one redacting handler on stderr."""
    _secrets[:] = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format.upper() == "JSON" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("gunicorn.error", "gunicorn.access", "werkzeug"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
