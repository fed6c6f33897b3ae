"""Who is sending: match a write key from Basic auth, Bearer or the body to a configured source."""
from __future__ import annotations

import base64
import binascii
import hmac

from .errors import Unauthorized

UNAUTHENTICATED = "unauthenticated"


def presented_key(authorization: str | None, body_write_key: str | None) -> str | None:
    """The write key a sender presented: Basic `key:` (colon optional), Bearer, or body `writeKey`."""
    if authorization:
        scheme, _, credential = authorization.strip().partition(" ")
        credential = credential.strip()
        if scheme.lower() == "basic" and credential:
            try:
                decoded = base64.b64decode(credential, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                raise Unauthorized("Authorization: Basic credential is not valid base64") from None
            return decoded.partition(":")[0] or None
        if scheme.lower() == "bearer" and credential:
            return credential
    return body_write_key


def source_for(key: str | None, write_keys: dict, allow_unauthenticated: bool) -> str:
    """The label of the source owning `key`; refuse unknown keys, and missing ones unless allowed."""
    if key is None:
        if allow_unauthenticated:
            return UNAUTHENTICATED
        raise Unauthorized("a write key is required (Basic auth, Bearer token or the body's writeKey)")
    label = None
    for known, known_label in write_keys.items():  # compare every key, in constant time each
        if hmac.compare_digest(known.encode(), key.encode()):
            label = known_label
    if label is None:
        raise Unauthorized("unknown write key")
    return label
