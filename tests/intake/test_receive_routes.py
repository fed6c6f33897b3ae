"""The bare WSGI layer that serves the CDP's routes ahead of Flask: the HTTP details it now owns."""
import io

import orjson
import pytest

from conftest import WRITE_KEY, LiveService, track, write_key_header
from destination.app import create_app
from destination.intake import pipeline

AUTH = (WRITE_KEY, "")


def stored(queue):
    return queue.depth() + queue.dead_letter_count()


def chunks(body: bytes, size: int = 1000):
    for start in range(0, len(body), size):
        yield body[start:start + size]


def test_a_chunked_body_is_read_to_its_end(service, queue, clock):
    body = orjson.dumps([track(f"c{i}", clock.iso()) for i in range(50)])
    response = service.session.post(service.url + "/v1/batch", data=chunks(body), timeout=10,
                                    headers={"Content-Type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 50 and queue.depth() == 50


def test_a_chunked_body_over_the_limit_gets_413_and_stores_nothing(settings, queue, clock):
    app = create_app(settings.replace(max_request_bytes=4096), queue=queue, clock=clock)
    live = LiveService(app, settings, queue, clock).start()
    try:
        body = orjson.dumps([track(f"c{i}", clock.iso()) for i in range(100)])
        response = live.session.post(live.url + "/v1/batch", data=chunks(body), timeout=10)
        assert (response.status_code, response.json()["code"]) == (413, "payload_too_large")
        assert "4096" in response.json()["message"]
    finally:
        live.close()
    assert stored(queue) == 0


@pytest.mark.parametrize("path, method, allowed", [
    ("/v1/batch", "GET", "POST"), ("/v1/track/", "DELETE", "POST"), ("/v1/webhook", "GET", "POST, PUT, PATCH"),
])
def test_other_methods_get_405_naming_the_allowed_ones(client, queue, path, method, allowed):
    response = client.open(path, method=method, auth=AUTH)
    assert response.status_code == 405
    assert response.json["code"] == "method_not_allowed" and response.json["message"]
    assert response.headers["Allow"] == allowed
    assert stored(queue) == 0


def call(app, environ: dict):
    """Call the WSGI app as a server would, with an environ we choose byte for byte."""
    answer = {}
    base = {"REQUEST_METHOD": "POST", "PATH_INFO": "/v1/batch", "SERVER_NAME": "test", "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http", "wsgi.errors": io.StringIO(),
            "HTTP_AUTHORIZATION": write_key_header("basic")["Authorization"]}
    body = b"".join(app({**base, **environ}, lambda status, headers: answer.update(status=status, headers=dict(headers))))
    return answer["status"], answer["headers"], orjson.loads(body)


@pytest.mark.parametrize("length", ["12x", "-1", "1e3"])
def test_an_unreadable_content_length_gets_400(app, queue, length):
    status, headers, body = call(app, {"CONTENT_LENGTH": length, "wsgi.input": io.BytesIO(b"[]")})
    assert (status, body["code"]) == ("400 Bad Request", "invalid_content_length")
    assert repr(length) in body["message"] and len(headers["X-Request-Id"]) == 32
    assert stored(queue) == 0


def test_a_declared_length_over_the_limit_gets_413_before_the_body_is_read(app, queue, settings):
    unread = io.BytesIO(b"x" * 10)
    status, _, body = call(app, {"CONTENT_LENGTH": str(settings.max_request_bytes + 1), "wsgi.input": unread})
    assert (status[:4], body["code"]) == ("413 ", "payload_too_large")
    assert unread.tell() == 0 and stored(queue) == 0


def test_an_unexpected_failure_is_a_500_with_retry_after_and_stores_nothing(client, queue, clock, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug")
    monkeypatch.setattr(pipeline, "process_events", broken)
    response = client.post("/v1/batch", json=[track("m1", clock.iso())], auth=AUTH, headers={"X-Request-Id": "req-1"})
    assert (response.status_code, response.json["code"]) == (500, "internal_error")
    assert response.headers["Retry-After"] == "5" and response.headers["X-Request-Id"] == "req-1"
    assert stored(queue) == 0


def test_paths_outside_the_receive_routes_still_reach_flask(client):
    assert client.get("/healthz").json == {"status": "ok"}
    missing = client.post("/v1/batches", json=[], auth=AUTH)
    assert (missing.status_code, missing.json["code"]) == (404, "not_found")
    assert len(missing.headers["X-Request-Id"]) == 32
