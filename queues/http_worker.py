"""gunicorn's gthread worker, giving a connection a thread only once its whole request has arrived.

The stock worker hands a connection to a thread as soon as its first byte arrives, and the thread
then blocks reading the rest: a few clients that send half a request hold every thread, and
nobody else is answered. Here the worker's event loop reads each request (head, and a body of
known length up to the app's MAX_CONTENT_LENGTH) without blocking, and gives the connection to a
thread with those bytes already read. A request not complete within REQUEST_READ_SECONDS is
dropped. A connection from a source held in the app's tarpit (queues.tarpit) is read only once
its pause has passed. `worker_class = "queues.http_worker.RequestBufferingWorker"` in gunicorn.conf.py.
"""

import errno
import heapq
import itertools
import re
import selectors
import time
from functools import partial

from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker

# A client has this long to send its whole request (nginx's client_header_timeout is 60 s).
REQUEST_READ_SECONDS = 30.0
# A head longer than this goes to a thread as it is, for gunicorn's own limits to refuse.
MAX_HEAD_BYTES = 64 * 1024
DEFAULT_BODY_LIMIT = 1024 * 1024
_CONTENT_LENGTH = re.compile(rb"\ncontent-length:[ \t]*(\d{1,19})[ \t]*\r", re.IGNORECASE)
_CHUNKED = re.compile(rb"\ntransfer-encoding:[^\r]*chunked", re.IGNORECASE)
_EXPECT_CONTINUE = re.compile(rb"\nexpect:[ \t]*100-continue", re.IGNORECASE)
_LAST_CHUNK = re.compile(rb"(?:^|\r\n)0+(?:;[^\r\n]*)?\r\n")


def request_ready(data, body_limit):
    """Whether data (the bytes received so far) is enough to give the connection a thread.

    True for a whole head and body; also for anything a thread reads at once or gunicorn refuses
    at once: an oversized head, a body beyond body_limit (the app answers 413), or a client that
    waits for `100 Continue` before it sends its body.
    """
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return len(data) > MAX_HEAD_BYTES
    head, body = data[: end + 2], memoryview(data)[end + 4 :]
    if _EXPECT_CONTINUE.search(head):
        return True
    if _CHUNKED.search(head):
        return len(body) > body_limit or _LAST_CHUNK.search(body) is not None
    length = _CONTENT_LENGTH.search(head)
    return len(body) >= min(int(length.group(1)) if length else 0, body_limit)


def _peer_host(conn):
    """The address a connection comes from (None on a Unix socket)."""
    return conn.client[0] if isinstance(conn.client, tuple) else None


class RequestBufferingWorker(ThreadWorker):
    """ThreadWorker whose event loop reads each request before a thread is given to it."""

    def init_process(self):
        self._reading = {}  # connection -> when it is dropped unless its request is complete
        self._paused = []  # heap of (when its pause ends, tie-breaker, connection), not yet read
        self._pause_order = itertools.count()
        super().init_process()

    def _body_limit(self):
        config = getattr(self.wsgi, "config", None) or {}
        return config.get("MAX_CONTENT_LENGTH") or DEFAULT_BODY_LIMIT

    def accept(self, listener):
        if self.cfg.is_ssl:
            return super().accept(listener)  # TLS must be unwrapped in a thread
        try:
            client_sock, client_addr = listener.accept()
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
            return None
        self.nr_conns += 1
        self._start_reading(TConn(self.cfg, client_sock, client_addr, listener.getsockname()))
        return None

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection's next request: read it here too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._start_reading(conn)

    def _start_reading(self, conn):
        conn.sock.setblocking(False)
        tarpit = (getattr(self.wsgi, "extensions", None) or {}).get("queues.tarpit")
        until = tarpit.until(_peer_host(conn)) if tarpit is not None and self.alive else None
        if until is None:
            self._read(conn)
        else:
            heapq.heappush(self._paused, (until, next(self._pause_order), conn))

    def wait_for_and_dispatch_events(self, timeout):
        """Also wake when a pause ends, and read the connections whose pause has (all when stopping)."""
        if self._paused:
            timeout = min(timeout, max(0.0, self._paused[0][0] - time.monotonic()))
        super().wait_for_and_dispatch_events(timeout)
        now = time.monotonic()
        while self._paused and (self._paused[0][0] <= now or not self.alive):
            self._read(heapq.heappop(self._paused)[2])

    def _read(self, conn):
        conn.received = bytearray()
        self._reading[conn] = time.monotonic() + REQUEST_READ_SECONDS
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _stop_reading(self, conn):
        del self._reading[conn]
        self.poller.unregister(conn.sock)

    def _on_readable(self, conn, _sock):
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away
            self._stop_reading(conn)
            self.nr_conns -= 1
            conn.close()
            return
        conn.received += data
        if request_ready(conn.received, self._body_limit()):
            self._stop_reading(conn)
            conn.data_ready = True  # the thread must not wait for more bytes before it parses
            self.enqueue_req(conn)

    def handle(self, conn):
        received = getattr(conn, "received", None)
        if received:
            conn.received = None
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(bytes(received))
        return super().handle(conn)

    def murder_pending(self):
        """Also drop connections whose request is not complete in time (soon, when stopping)."""
        super().murder_pending()
        now = time.monotonic()
        for conn, deadline in list(self._reading.items()):
            if not self.alive and deadline > now + STOP_KEEPALIVE_LINGER:
                deadline = self._reading[conn] = now + STOP_KEEPALIVE_LINGER
            if deadline <= now:
                self._stop_reading(conn)
                self.nr_conns -= 1
                conn.close()
