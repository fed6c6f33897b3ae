"""Fuzzing the receive path: over 10,000 random and mutated bodies and headers, sent to every
receiving route. Never a 5xx, never a crash, every error body has `code` and `message`, and a
request that is refused stores nothing."""
import base64
import gzip
import hashlib
import hmac
import json

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from conftest import DATA, write_key_header
from destination.app import create_app
from destination.queue.sqlite import SQLiteQueue

EXAMPLES = 10_000
SECRET = "fuzz-webhook-secret"
CAPTURED = json.loads((DATA / "sdk-wire-requests.json").read_text())["requests"]


def _plain(request) -> bytes:
    raw = base64.b64decode(request["body_base64"])
    return gzip.decompress(raw) if request["headers"].get("Content-Encoding") == "gzip" else raw


SEEDS = [_plain(r) for r in CAPTURED] + [
    json.loads((DATA / "signatures.json").read_text())["cases"][1]["body"].encode(),
    b'{"type":"track","event":"e","messageId":"m","userId":"u","timestamp":"2026-11-22T13:00:00Z","properties":{"n":1e400}}',
    b'[{"type":"track","event":"e","messageId":"m2","anonymousId":"a","timestamp":1795354990,"properties":{"x":[1,{"y":null}]}}]',
]
ROUTES = ["/v1/events", "/v1/batch", "/v1/import/", "/v1/b", "/v1/track", "/v1/t", "/v1/identify", "/v1/page/", "/v1/s",
          "/v1/group", "/v1/alias", "/v1/webhook", "/v1/webhook/", "/v1/nope", "/admin/deliveries", "/readyz"]
HEADER_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"), max_size=60)


@st.composite
def mutated(draw) -> bytes:
    """A real SDK body with a few bytes flipped, inserted, deleted, duplicated or cut off."""
    body = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "truncate"]))
        at = draw(st.integers(0, max(0, len(body) - 1)))
        if op == "flip" and body:
            body[at] = draw(st.integers(0, 255))
        elif op == "insert":
            body[at:at] = draw(st.sampled_from([b"[", b"]", b"{", b"}", b",", b'"', b"\\", b"1e999", b"null", b"\xff", b"-"]))
        elif op == "delete":
            del body[at:at + draw(st.integers(1, 8))]
        elif op == "duplicate":
            body[at:at] = body[at:at + draw(st.integers(1, 64))]
        else:
            del body[at:]
    return bytes(body)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["type", "event", "messageId", "userId", "anonymousId", "timestamp", "properties", "batch",
                         "writeKey", "context", "sentAt", "x"]) | st.text(max_size=8), children, max_size=6),
    max_leaves=25,
)
BODIES = st.one_of(mutated(), st.binary(max_size=600), JSON_VALUES.map(lambda value: json.dumps(value).encode()))


@st.composite
def requests_(draw):
    body = draw(BODIES)
    headers = {}
    auth = draw(st.sampled_from(["none", "basic", "basic-no-colon", "bearer", "random", "signature", "bad-signature", "secret"]))
    if auth in ("basic", "basic-no-colon", "bearer"):
        headers.update(write_key_header(auth))
    elif auth == "random":
        headers["Authorization"] = draw(HEADER_TEXT)
    elif auth == "bad-signature":
        headers["X-Signature"] = draw(HEADER_TEXT)
    elif auth == "secret":
        headers["X-Webhook-Secret"] = draw(st.sampled_from([SECRET, "wrong"]))
    if auth == "signature":  # signed over the body as sent before any gzip, as a sender would
        headers["X-Signature"] = hmac.new(SECRET.encode(), body, hashlib.sha1).hexdigest()
    encoding = draw(st.sampled_from([None, "gzip", "gzip", "identity", "deflate", " GZIP ", "gzip-but-plain"]))
    if encoding in ("gzip", " GZIP "):
        body = gzip.compress(body)
        if draw(st.booleans()) and len(body) > 12:
            body = body[:draw(st.integers(1, len(body) - 1))]  # a cut-off stream
    if encoding:
        headers["Content-Encoding"] = "gzip" if encoding == "gzip-but-plain" else encoding
    headers["Content-Type"] = draw(st.sampled_from(["application/json", "text/plain", "", "application/x-www-form-urlencoded"]))
    return draw(st.sampled_from(ROUTES)), draw(st.sampled_from(["POST", "POST", "POST", "PUT", "PATCH", "GET"])), body, headers


@pytest.mark.parametrize("backend", ["sqlite"])  # the receive path is the subject; the store is covered elsewhere
def test_fuzzed_requests_never_get_a_5xx_and_refused_ones_store_nothing(settings, clock, tmp_path):
    # Its own store with NORMAL sync: the same code paths, without an fsync per accepted request.
    queue = SQLiteQueue(tmp_path / "fuzz.sqlite3", synchronous="NORMAL")
    app = create_app(settings.replace(webhook_secrets={SECRET: "hook"}, max_request_bytes=64 * 1024), queue=queue, clock=clock)
    client = app.test_client()
    seen = {"requests": 0, "accepted_requests": 0, "statuses": set()}
    stored = lambda: queue.depth() + queue.dead_letter_count()

    @hypothesis_settings(max_examples=EXAMPLES, database=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(requests_())
    def one_request(request):
        route, method, body, headers = request
        before = stored()
        response = client.open(route, method=method, data=body, headers=headers)
        seen["requests"] += 1
        seen["statuses"].add(response.status_code)
        assert response.status_code < 500, response.get_data(as_text=True)
        if response.status_code >= 400:
            error = response.get_json()
            assert isinstance(error, dict) and error.get("code") and error.get("message"), response.get_data()
        if response.status_code == 200 and route not in ("/admin/deliveries", "/readyz"):
            seen["accepted_requests"] += 1
        elif method != "GET":
            assert stored() == before, f"a {response.status_code} answer stored events"

    one_request()
    queue.close()
    print(f"\nfuzz: {seen['requests']} requests, {seen['accepted_requests']} accepted, statuses {sorted(seen['statuses'])}")
    assert seen["requests"] >= EXAMPLES
    assert seen["accepted_requests"] > 100  # the fuzzer reached the storing path, not only the refusals
