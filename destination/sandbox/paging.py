"""`limit` and `next_page` for the list routes: an opaque cursor bound to the query it came from.

The cursor carries the offset and a digest of the query, so a cursor replayed against another
query (or made up) is a clear 400, not a silently wrong page.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json

from destination.sandbox.spec import ApiError

MAX_LIMIT = 100


def limit_of(raw: str | None, default: int = MAX_LIMIT) -> int:
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}, not {raw!r}")
    return int(raw)


def _digest(query) -> str:
    return hashlib.sha256(json.dumps(query, sort_keys=True, default=str).encode()).hexdigest()[:16]


def page(items: list, limit: int, cursor: str | None, query) -> tuple[list, str | None]:
    """One page of `items` and the cursor of the next, or None after the last."""
    start = 0
    if cursor:
        try:
            start, digest = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        except (ValueError, TypeError, binascii.Error):
            raise ApiError(400, "next_page is not a cursor this API gave") from None
        if digest != _digest(query) or not isinstance(start, int) or start < 0:
            raise ApiError(400, "next_page belongs to another query; start again without it")
    end = start + limit
    following = None
    if end < len(items):
        following = base64.urlsafe_b64encode(json.dumps([end, _digest(query)]).encode()).decode()
    return items[start:end], following
