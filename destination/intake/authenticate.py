"""Who is sending: match a write key from Basic auth, Bearer or the body to a configured source."""
from __future__ import annotations

import base64
import binascii
import hmac

from destination.errors import Unauthorized

UNAUTHENTICATED = "unauthenticated"


def _credential(authorization: str | None) -> tuple[str, str]:
    """(scheme in lower case, credential) from an Authorization header; empty strings if absent."""
    scheme, _, credential = (authorization or "").strip().partition(" ")
    return scheme.lower(), credential.strip()


def presented_key(authorization: str | None, body_write_key: str | None) -> str | None:
    """The write key a sender presented: Basic `key:` (colon optional), Bearer, or body `writeKey`."""
    scheme, credential = _credential(authorization)
    if scheme == "basic" and credential:
        try:
            decoded = base64.b64decode(credential, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthorized("Authorization header: Basic auth value is not base64") from None
        return decoded.partition(":")[0] or None
    return bearer(authorization) or body_write_key


def bearer(authorization: str | None) -> str | None:
    scheme, credential = _credential(authorization)
    return credential or None if scheme == "bearer" else None


def source_for(key: str | None, write_keys: dict, allow_unauthenticated: bool) -> str:
    """The label of the source owning `key`; refuse unknown keys, and missing ones unless allowed."""
    if key is None:
        if allow_unauthenticated:
            return UNAUTHENTICATED
        raise Unauthorized("a write key is required (Basic auth, Bearer token or the body's writeKey)")
    label = match_secret(key, write_keys)
    if label is None:
        raise Unauthorized("unknown write key")
    return label


def match_secret(presented: str, secrets: dict, expected=lambda secret: secret) -> str | None:
    """The label of the configured secret whose `expected(secret)` equals `presented`, or None.

    Every secret is compared, each in constant time, so timing tells nothing about which matched."""
    offered = presented.encode("utf-8", "surrogatepass")
    label = None
    for known, known_label in secrets.items():
        if hmac.compare_digest(expected(known).encode(), offered):
            label = known_label
    return label


def first_element(body: bytes) -> bytes | None:
    """The exact bytes of a JSON array's first element, or None if `body` is not an array.

    Senders sign a batch by its first element as their own serializer wrote it; re-serializing
    in Python would not reproduce those bytes (`1.5e-7` vs `1.5e-07`), so we cut them out of
    the body instead. Only strings need care: brackets inside them do not count.
    """
    start = 0
    while start < len(body) and body[start] in b" \t\r\n":
        start += 1
    if start >= len(body) or body[start] != ord("["):
        return None
    i = start + 1
    while i < len(body) and body[i] in b" \t\r\n":
        i += 1
    begin, depth, in_string = i, 0, False
    while i < len(body):
        byte = body[i]
        if in_string:
            if byte == 0x5C:  # backslash: skip the escaped byte
                i += 1
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in b"[{":
            depth += 1
        elif byte in b"]}":
            if depth == 0:  # the array ended: the first element was a scalar (or there was none)
                return body[begin:i].rstrip() or None
            depth -= 1
            if depth == 0:
                return body[begin:i + 1]
        elif byte == 0x2C and depth == 0:  # a comma after a scalar first element
            return body[begin:i].rstrip()
        i += 1
    return None


def webhook_source(body: bytes, signature: str | None, static_secret: str | None, secrets: dict,
                   allow_unauthenticated: bool) -> str:
    """The label of the secret that vouches for a webhook request, or Unauthorized saying why.

    `X-Signature` is hex HMAC-SHA1 over the body, or over the first element's bytes when the body
    is an array. A static secret header serves senders that cannot sign. Every configured secret
    is tried, so two can be live while one is rotated out.
    """
    if not secrets:
        if allow_unauthenticated:
            return UNAUTHENTICATED
        raise Unauthorized("the webhook route is closed until WEBHOOK_SECRETS is set", code="webhook_disabled")
    if signature:
        signed = first_element(body)
        signed = body if signed is None else signed
        label = match_secret(signature.strip().lower(), secrets,
                             lambda secret: hmac.new(secret.encode(), signed, "sha1").hexdigest())
        if label is None:
            raise Unauthorized("X-Signature does not match the body under any configured secret", code="invalid_signature")
        return label
    if static_secret:
        label = match_secret(static_secret.strip(), secrets)
        if label is None:
            raise Unauthorized("the webhook secret header does not match any configured secret", code="invalid_secret")
        return label
    raise Unauthorized("unsigned webhook: send X-Signature or the secret header", code="unsigned")
