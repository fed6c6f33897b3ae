"""The sender on the wire: what Metronome receives from each POST, through a proxy too."""
import gzip
import http.server
import json
import threading

import pytest

from destination.worker.send import USER_AGENT, Sender


class Capture(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as Metronome's edge allows

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.seen.append({"target": self.path, "headers": dict(self.headers), "body": body,
                                 "connection": self.client_address})
        answer = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def capture():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_each_send_carries_its_own_body_and_the_same_headers_over_one_connection(capture):
    sender = Sender(f"http://127.0.0.1:{capture.server_port}/", "tok-1", gzip_level=1)
    bodies = [b'[{"transaction_id":"a"}]', b'[{"transaction_id":"bb"},{"transaction_id":"c"}]']
    outcomes = [sender.send(body) for body in bodies]
    assert [o.status for o in outcomes] == [200, 200]
    assert [gzip.decompress(seen["body"]) for seen in capture.seen] == bodies
    for seen in capture.seen:
        assert seen["target"] == "/v1/ingest"
        assert {k: seen["headers"][k] for k in ("Authorization", "Content-Type", "Content-Encoding", "User-Agent")} == {
            "Authorization": "Bearer tok-1", "Content-Type": "application/json", "Content-Encoding": "gzip",
            "User-Agent": USER_AGENT}
        assert seen["headers"]["Content-Length"] == str(len(seen["body"]))
    assert capture.seen[0]["connection"] == capture.seen[1]["connection"]  # kept alive
    sender.close()


def test_without_gzip_the_body_goes_as_it_is(capture):
    sender = Sender(f"http://127.0.0.1:{capture.server_port}", "tok", gzip_level=0)
    assert sender.send(b"[]").status == 200
    assert capture.seen[0]["body"] == b"[]" and "Content-Encoding" not in capture.seen[0]["headers"]
    sender.close()


def test_a_proxy_from_the_environment_carries_the_requests(capture, monkeypatch):
    """HTTP_PROXY is read once, at start: every send goes to the proxy, naming Metronome's URL."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{capture.server_port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    sender = Sender("http://metronome.invalid", "tok")  # never resolved: the proxy answers
    assert [sender.send(b"[]").status for _ in range(2)] == [200, 200]
    assert [seen["target"] for seen in capture.seen] == ["http://metronome.invalid/v1/ingest"] * 2
    assert json.loads(sender.send(b"[]").body) == {"ok": True}
    sender.close()
