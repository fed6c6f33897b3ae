"""Fuzzing the admin API with a valid token: 10,000 requests to every admin route, with random
path ids, query parameters and bodies. Never a 5xx, and every error body has `code` and `message`."""
import json

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from conftest import track
from destination.app import create_app
from destination.queue.sqlite import SQLiteQueue

EXAMPLES = 10_000
ADMIN = {"Authorization": "Bearer fuzz-admin"}
# Numbers where 64-bit columns, Python's int() and JSON disagree.
NUMBERS = ["0", "1", "2", "-1", "9223372036854775807", "9223372036854775808", "99999999999999999999999", "1e3",
           "1.5", "²", "٣", " 1", "", "0x10", "NaN", "v1", "v2", "v99999999999999999999"]
QUERY_NAMES = ["limit", "since_ms", "until_ms", "code", "stage", "hours", "comment", "transaction_id", "messageId",
               "customer_id", "recent", "window"]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70) | st.floats(allow_nan=False)
    | st.text(max_size=12) | st.sampled_from(NUMBERS),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(
        st.sampled_from(["document", "comment", "base_version", "version", "mapping", "mappings", "event", "events",
                         "recent", "source", "price", "customer_id", "all", "code", "stage", "since_ms", "until_ms",
                         "confirm_id_change", "name", "trigger", "fields"]), children, max_size=5),
    max_leaves=20,
)


def _routes(app) -> list[tuple[str, str]]:
    """(method, rule) for every admin route, from the app itself: a new route is fuzzed too."""
    return sorted((method, rule.rule) for rule in app.url_map.iter_rules() if rule.rule.startswith("/admin")
                  for method in rule.methods - {"HEAD", "OPTIONS"})


@st.composite
def admin_requests(draw, routes):
    method, rule = draw(st.sampled_from(routes))
    path = rule
    for variable in ("<name>",):
        path = path.replace(variable, draw(st.sampled_from(["default", "nope", "%00", "a b", "x" * 300])))
    if "<int" in path:
        head, _, tail = path.partition("<int")
        path = head + draw(st.sampled_from(NUMBERS[:8] + ["-5", "abc"])) + tail.partition(">")[2]
    query = draw(st.dictionaries(st.sampled_from(QUERY_NAMES), st.sampled_from(NUMBERS + ["hour", "week"]) | st.text(max_size=6),
                                max_size=3))
    body = draw(st.one_of(st.just(b""), st.binary(max_size=40), JSON_VALUES.map(lambda v: json.dumps(v).encode())))
    return method, path, query, body


@pytest.mark.parametrize("backend", ["sqlite"])  # the admin API's checks are the subject; both stores run its other tests
def test_fuzzed_admin_requests_never_get_a_5xx(settings, clock, tmp_path):
    queue = SQLiteQueue(tmp_path / "fuzz.sqlite3", synchronous="NORMAL")
    app = create_app(settings.replace(admin_tokens={"fuzz-admin": "fuzzer"}, write_keys={"fuzz-key": "fuzz"}),
                     queue=queue, clock=clock)
    app.config["BILLING_REFRESH_WAIT_S"] = 0.01  # no worker takes it here: answer at once
    client = app.test_client()
    # Something to find: accepted events, a dead letter, a second mapping version.
    seeded = client.post("/v1/batch", json={"batch": [track(f"m{i}", clock.iso()) for i in range(3)]
                                            + [{"type": "track", "event": "e", "messageId": "bad", "timestamp": "nope"}]},
                         headers={"Authorization": "Bearer fuzz-key"})
    assert seeded.status_code == 200
    routes = _routes(app)
    seen = {"requests": 0, "statuses": {}}

    @hypothesis_settings(max_examples=EXAMPLES, database=None, deadline=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(admin_requests(routes))
    def one_request(request):
        method, path, query, body = request
        response = client.open(path, method=method, query_string=query, data=body, headers=ADMIN)
        seen["requests"] += 1
        seen["statuses"][response.status_code] = seen["statuses"].get(response.status_code, 0) + 1
        assert response.status_code < 500, (method, path, query, body, response.get_data(as_text=True))
        if response.status_code >= 400 and response.status_code != 405:
            error = response.get_json()
            assert isinstance(error, dict) and error.get("code") and error.get("message"), response.get_data()

    one_request()
    queue.close()
    print(f"\nadmin fuzz: {seen['requests']} requests over {len(routes)} routes, statuses {dict(sorted(seen['statuses'].items()))}")
    assert seen["requests"] >= EXAMPLES
    assert seen["statuses"].get(200, 0) > 100  # the fuzzer reached the working paths, not only the refusals
