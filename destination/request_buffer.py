"""Slow clients cannot starve the receiver: a request is read whole before a thread takes it.

gunicorn's gthread worker hands a connection to a thread as soon as its first bytes arrive, and
the thread then reads the rest, blocking. A client that sends a byte a second holds that thread
for as long as it likes; sixteen of them held every thread of `serve`, and new senders timed out.
This worker reads each request (headers, then the body its Content-Length or chunked framing
announces) on the worker's event loop, without a thread, and gives it to a thread only once it
is all there. A request not complete within REQUEST_READ_TIMEOUT_SECONDS is answered 408 and
closed. A buffering proxy in front (nginx, or a PaaS router) does the same job; this keeps a
self-hosted `serve` safe without one.
"""
from __future__ import annotations

import re
import selectors
import socket
import time
from functools import partial

from gunicorn.workers.gthread import ThreadWorker

HEADERS_END = b"\r\n\r\n"
MAX_HEADER_BYTES = 64 * 1024  # longer heads go to a thread, whose parser refuses them
_LENGTH = re.compile(rb"\r\ncontent-length[ \t]*:[ \t]*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding[ \t]*:[^\r\n]*chunked", re.IGNORECASE)
TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


def request_complete(data: bytes | bytearray, max_body: int) -> bool:
    """True once `data` holds a whole request, or so much that a thread should take it anyway
    (its parser and the app refuse what is too large). Pure: the framing rules of RFC 9112."""
    end = data.find(HEADERS_END)
    if end < 0:
        return len(data) > MAX_HEADER_BYTES
    head, body = data[:end + 2], len(data) - end - 4  # head keeps its last CRLF, for the patterns
    if _CHUNKED.search(head):
        return data.endswith(b"0\r\n\r\n") or body > max_body
    length = _LENGTH.search(head)
    return length is None or body >= min(int(length.group(1)), max_body + 1)


class Prefixed:
    """A socket whose reads give the bytes the event loop already took from it first."""

    def __init__(self, raw: socket.socket):
        self.raw = raw
        self.prefix = bytearray()

    def recv(self, size: int, *flags) -> bytes:
        if self.prefix:
            out = bytes(self.prefix[:size])
            del self.prefix[:size]
            return out
        return self.raw.recv(size, *flags)

    def recv_into(self, buffer, size: int = 0, *flags) -> int:
        if self.prefix:
            out = self.recv(size or len(buffer))
            buffer[:len(out)] = out
            return len(out)
        return self.raw.recv_into(buffer, size, *flags)

    def __getattr__(self, name):
        return getattr(self.raw, name)


class BufferingThreadWorker(ThreadWorker):
    """gthread, with each request read whole on the event loop first (see the module's text)."""

    read_timeout_s = 10.0  # set from REQUEST_READ_TIMEOUT_SECONDS after the worker starts
    max_body = 5 * 2**20  # set from MAX_REQUEST_BYTES

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.reading: list = []  # connections whose request is still arriving

    def enqueue_req(self, conn):
        if not isinstance(conn.sock, Prefixed):
            conn.sock = Prefixed(conn.sock)
        if conn.parser is not None and conn.parser.unreader.buf.getvalue():
            return super().enqueue_req(conn)  # the last request's parser already read this one's bytes
        conn.sock.raw.setblocking(False)
        conn.read_by = time.monotonic() + self.read_timeout_s
        # Most requests (a kept-alive connection that just turned readable, or a small body) are
        # whole already: read now, and wait on the event loop only for the rest.
        if not self._read_available(conn):
            self._wait_for_more(conn)

    def _wait_for_more(self, conn) -> None:
        self.reading.append(conn)
        self.poller.register(conn.sock.raw, selectors.EVENT_READ, partial(self._on_request_bytes, conn))

    def _on_request_bytes(self, conn, _fileobj) -> None:
        self.poller.unregister(conn.sock.raw)  # before anything may close the socket
        self.reading.remove(conn)
        if not self._read_available(conn):
            self._wait_for_more(conn)

    def _read_available(self, conn) -> bool:
        """Read what has arrived. True once the connection is done here: its request is whole and
        a thread has it, or the client went away (closed). False while more is to come."""
        try:
            chunk = conn.sock.raw.recv(65536)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            chunk = b""
        if not chunk:  # the client went away before its request was whole
            self.nr_conns -= 1
            conn.close()
            return True
        conn.sock.prefix += chunk
        if not request_complete(conn.sock.prefix, self.max_body):
            return False
        conn.data_ready = True  # the thread must not wait for the socket: the bytes are in hand
        super().enqueue_req(conn)
        return True

    def _drop(self, conn, answer: bytes = b"") -> None:
        self.poller.unregister(conn.sock.raw)
        self.reading.remove(conn)
        self.nr_conns -= 1
        if answer:
            try:
                conn.sock.raw.send(answer)
            except OSError:
                pass
        conn.close()

    def murder_pending(self):
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c in self.reading if c.read_by <= now]:
            self._drop(conn, TIMED_OUT)
