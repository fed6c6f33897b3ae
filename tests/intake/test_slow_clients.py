"""Slow clients cannot starve the receiver: requests are read whole before a thread takes one,
and a request not whole within REQUEST_READ_TIMEOUT_SECONDS is answered 408 and closed."""
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

import pytest
import requests

from conftest import ROOT, WRITE_KEY, store_env, track, wait_until
from destination.request_buffer import request_complete

GET = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
POST = b"POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n"
CHUNKED = b"POST /v1/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"


@pytest.mark.parametrize("data, whole", [
    (b"", False),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\n", False),  # the head is not over
    (GET, True),  # no body announced
    (POST, False),
    (POST + b"12", False),
    (POST + b"12345", True),
    (POST + b"12345GET", True),  # the next request's bytes behind it: the parser keeps them
    (POST.replace(b"Content-Length", b"content-LENGTH"), False),
    (POST.replace(b"Content-Length", b"content-LENGTH") + b"hello", True),
    (CHUNKED + b"5\r\nhello\r\n", False),
    (CHUNKED + b"5\r\nhello\r\n0\r\n\r\n", True),
    (b"POST / HTTP/1.1\r\nContent-Length: 999999999\r\n\r\n" + b"x" * 1025, True),  # over the limit: a thread refuses it
    (b"GET /" + b"a" * 70_000, True),  # a head past 64 KB: the parser refuses it
])
def test_a_request_is_whole_by_its_own_framing(data, whole):
    assert request_complete(data, max_body=1024) is whole


def _serve(settings, sandbox, port: int, log):
    env = {**os.environ, **store_env(settings), "METRONOME_BASE_URL": sandbox.url, "METRONOME_API_TOKEN": "t",
           "MAPPINGS_PATH": settings.mappings_path, "WRITE_KEYS": f"test:{WRITE_KEY}", "PORT": str(port),
           "HOST": "127.0.0.1", "REQUEST_READ_TIMEOUT_SECONDS": "3", "BILLING_CHECK": "off"}
    return subprocess.Popen([sys.executable, "-m", "destination", "serve"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)


def _trickle(port: int, stop: threading.Event, answers: list) -> None:
    """A client that sends its request a byte every half second, and never finishes on time."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        for byte in POST + b"1234":
            if stop.is_set():
                return
            try:
                conn.send(bytes([byte]))
            except OSError:
                break
            if stop.wait(0.5):
                return
        try:
            answers.append(conn.recv(100))
        except OSError as exc:
            answers.append(exc)


def test_64_slow_connections_leave_other_senders_answered_and_are_cut_off_with_a_408(settings, sandbox, tmp_path, clock):
    from test_cli import _free_port

    port = _free_port()
    with open(tmp_path / "serve.log", "wb") as log:
        server = _serve(settings, sandbox, port, log)
    stop, answers = threading.Event(), []
    slow = [threading.Thread(target=_trickle, args=(port, stop, answers), daemon=True) for _ in range(64)]
    try:
        wait_until(lambda: _up(port), timeout=30, message="serve to listen")
        for thread in slow:
            thread.start()
        time.sleep(1)  # every slow connection is open and has sent its first bytes: each held a thread before
        took = []
        with requests.Session() as session:
            for i in range(40):
                start = time.monotonic()
                answer = session.post(f"http://127.0.0.1:{port}/v1/events", json=track(f"n{i}", clock.iso()),
                                      auth=(WRITE_KEY, ""), timeout=5)
                took.append(time.monotonic() - start)
                assert answer.status_code == 200
        wait_until(lambda: len(answers) == 64, timeout=20, message="the server to cut every slow client off")
        assert all(isinstance(a, bytes) and a.startswith(b"HTTP/1.1 408") for a in answers), answers[:3]
    finally:
        stop.set()
        server.terminate()
        server.wait(30)
    took.sort()
    print(f"\nwith 64 slow connections: 40 requests answered, p50 {statistics.median(took) * 1000:.1f} ms, "
          f"max {took[-1] * 1000:.1f} ms")


def _up(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok
    except requests.RequestException:  # refused, or accepted by a process still booting
        return False
