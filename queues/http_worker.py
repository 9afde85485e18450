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
import json
import math
import re
import select
import selectors
import socket
import sys
import time
from functools import partial

from gunicorn import util
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker

# A client has this long to send its whole request (nginx's client_header_timeout is 60 s).
REQUEST_READ_SECONDS = 30.0
# A head longer than this is refused here: gunicorn's own limits let up to 800 KB through, and a
# thread given an unfinished head would wait for the rest.
MAX_HEAD_BYTES = 64 * 1024
_HEAD_TOO_LONG_BODY = (
    b'{"error":{"code":"invalid_request","message":"the request head is longer than %d bytes"}}'
    % MAX_HEAD_BYTES
)
HEAD_TOO_LONG = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
    b"Connection: close\r\n\r\n%s" % (len(_HEAD_TOO_LONG_BODY), _HEAD_TOO_LONG_BODY)
)
DEFAULT_BODY_LIMIT = 1024 * 1024
# After a last response, what the client still sends is read and dropped this long at most before
# the socket is closed (gunicorn's own lingering close waits as long, but blocking its event loop).
LINGER_SECONDS = 2.0
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_NUMBER = re.compile(rb"0*(\d+)")
# Digits, or a list of them: anything else (a sign, a letter) every parser refuses at once.
_LENGTH_VALUE = re.compile(rb"[\d, \t]*")
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})(?:;[^\r\n]*)?")
_EXPECT_FIELD = re.compile(rb"\r\nexpect:[ \t]*100-continue[ \t]*(?=\r\n)", re.IGNORECASE)


def _declared_length(values):
    """The longest body any Content-Length value names: a list of them, or zeros in front, included.

    Waiting too long only keeps a connection in the event loop; too short would give a thread a
    request whose body it then waits for. A value that is no length at all (-1, +5) is 0: gunicorn
    answers it 400 at once, where waiting would leave the client unanswered until its deadline.
    """
    if not all(_LENGTH_VALUE.fullmatch(value) for value in values):
        return 0
    numbers = _NUMBER.findall(b",".join(values))
    return max((int(n) if len(n) <= 19 else math.inf for n in numbers), default=0)


class RequestReader:
    """One request's bytes as they arrive, and whether they are enough to give it a thread.

    Enough is a whole head and body; also anything a thread reads at once or gunicorn refuses at
    once: a body beyond body_limit (the app answers 413), broken chunk framing. A head longer than
    MAX_HEAD_BYTES is never enough (head_too_long).
    A client that waits for `100 Continue` is sent it from here (see continue_due), so that its
    body too arrives before a thread is given.
    """

    def __init__(self, body_limit):
        self.received = bytearray()
        self._body_limit = body_limit
        self._body_start = None  # where the body begins, once the head is whole
        self._length = 0
        self._chunked = False
        self._next_chunk = None  # where the next chunk-size line of a chunked body begins
        self._expects_continue = False
        self._continue_sent = False
        self.head_too_long = False

    def feed(self, data):
        """Add data just received; True once the request is enough to give it a thread."""
        self.received += data
        if self._body_start is None:
            end = self.received.find(b"\r\n\r\n", max(0, len(self.received) - len(data) - 3))
            if end < 0:
                self.head_too_long = len(self.received) > MAX_HEAD_BYTES
                return False
            self._read_head(end)
        if len(self.received) - self._body_start > self._body_limit:
            return True
        if self._chunked:
            return self._chunks_complete()
        return len(self.received) - self._body_start >= min(self._length, self._body_limit)

    def _read_head(self, end):
        self._body_start = self._next_chunk = end + 4
        fields = {}
        for line in bytes(self.received[:end]).split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            fields.setdefault(name.strip().lower(), []).append(value.strip().lower())
        self._length = _declared_length(fields.get(b"content-length", []))
        self._chunked = any(b"chunked" in value for value in fields.get(b"transfer-encoding", []))
        self._expects_continue = b"100-continue" in fields.get(b"expect", [])

    def _chunks_complete(self):
        """Whether the chunks so far end with the last chunk and its trailers, or are broken."""
        data = self.received
        while True:
            line_end = data.find(b"\r\n", self._next_chunk)
            if line_end < 0:
                return False
            size = _CHUNK_SIZE.fullmatch(data, self._next_chunk, line_end)
            if size is None:
                return True
            length = int(size.group(1), 16)
            if length == 0:  # the last chunk; trailers (perhaps none) end with an empty line
                return data.find(b"\r\n\r\n", line_end) >= 0
            chunk_end = line_end + 2 + length
            if len(data) < chunk_end + 2:
                return False
            if data[chunk_end : chunk_end + 2] != b"\r\n":
                return True
            self._next_chunk = chunk_end + 2

    def continue_due(self):
        """True once, when the head asks for `100 Continue` and the body is still to come."""
        due = self._body_start is not None and self._expects_continue and not self._continue_sent
        self._continue_sent |= due
        return due

    def request(self):
        """The bytes for the thread, without `Expect: 100-continue` (answered here, or moot)."""
        if not self._expects_continue:
            return bytes(self.received)
        head = _EXPECT_FIELD.sub(b"", bytes(self.received[: self._body_start]))
        return head + bytes(self.received[self._body_start :])


def _has_room(sock):
    """Whether sock's send buffer has room (the client reads what it was sent)."""
    poll = select.poll()
    poll.register(sock, select.POLLOUT)
    return bool(poll.poll(0))


class _Connection(TConn):
    """A TConn whose graceful close lingers in the worker's event loop instead of blocking it."""

    def __init__(self, worker, *args):
        super().__init__(*args)
        self._worker = worker

    def close(self, graceful=False):
        if graceful:
            self._worker.linger(self.sock)
        else:
            super().close()


def _write_json_error(sock, status, reason, message):
    """gunicorn's answer to a request it cannot parse, as the contract's JSON error."""
    code = "internal_error" if status >= 500 else "invalid_request"
    text = f"{reason}: {message}" if message else reason
    body = json.dumps({"error": {"code": code, "message": text}}).encode()
    head = "HTTP/1.1 %d %s\r\nConnection: close\r\nContent-Type: application/json\r\n" % (status, reason)
    util.write_nonblock(sock, b"%sContent-Length: %d\r\n\r\n%s" % (head.encode("latin-1"), len(body), body))


# gunicorn answers a request it cannot parse (a bad request line, header bytes it refuses) through
# util.write_error, with an HTML page; every answer of this service is JSON.
util.write_error = _write_json_error


def _peer_host(conn):
    """The address a connection comes from (None on a Unix socket)."""
    return conn.client[0] if isinstance(conn.client, tuple) else None


class RequestBufferingWorker(ThreadWorker):
    """ThreadWorker whose event loop reads each request before a thread is given to it."""

    def init_process(self):
        self._reading = {}  # connection -> when it is dropped unless its request is complete
        self._lingering = {}  # socket -> when it is closed even if the client has not closed its side
        self._paused = []  # heap of (when its pause ends, tie-breaker, connection, bytes), not yet read
        self._pause_order = itertools.count()
        super().init_process()

    def handle_exit(self, sig, frame):
        """A stop before the app is loaded ends the worker at once: it may be waiting up to
        storage.folder_lock.WAIT_SECONDS for the data folder, and holds no state yet."""
        if not self.booted:
            sys.exit(0)
        super().handle_exit(sig, frame)

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
        self._start_reading(_Connection(self, self.cfg, client_sock, client_addr, listener.getsockname()))
        # At worker_connections gunicorn stops accepting: idle connections would lock everyone out
        # until their deadline. A held source's waiting connection goes first (a flooder's would
        # otherwise fill the worker, safe from any deadline), then the one sending its request longest.
        while self.nr_conns >= self.worker_connections and (self._paused or self._reading):
            if self._paused:
                _, _, conn, _ = heapq.heappop(self._paused)
                self.nr_conns -= 1
                conn.close()
            else:
                self._drop(next(iter(self._reading)))
        return None

    def on_client_socket_readable(self, conn, client):
        """A kept-alive connection's next request: read it here too."""
        self.poller.unregister(client)
        self.keepalived_conns.remove(conn)
        self._start_reading(conn)

    def enqueue_req(self, conn):
        """gunicorn's call for a request read ahead behind the last one (pipelined): read it here too."""
        if self.cfg.is_ssl:
            return super().enqueue_req(conn)
        return self._start_reading(conn, conn.parser.unreader.take_buffered())

    def _start_reading(self, conn, data=b""):
        conn.sock.setblocking(False)
        tarpit = (getattr(self.wsgi, "extensions", None) or {}).get("queues.tarpit")
        until = tarpit.until(_peer_host(conn)) if tarpit is not None and self.alive else None
        if until is None:
            self._read(conn, data)
        else:
            heapq.heappush(self._paused, (until, next(self._pause_order), conn, data))

    def wait_for_and_dispatch_events(self, timeout):
        """Also wake when a pause ends, and read the connections whose pause has (all when stopping)."""
        if self._paused:
            timeout = min(timeout, max(0.0, self._paused[0][0] - time.monotonic()))
        super().wait_for_and_dispatch_events(timeout)
        now = time.monotonic()
        while self._paused and (self._paused[0][0] <= now or not self.alive):
            _, _, conn, data = heapq.heappop(self._paused)
            self._read(conn, data)

    def _read(self, conn, data):
        conn.reader = RequestReader(self._body_limit())
        self._reading[conn] = time.monotonic() + REQUEST_READ_SECONDS
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
        if data:
            self._feed(conn, data)

    def _stop_reading(self, conn):
        del self._reading[conn]
        self.poller.unregister(conn.sock)

    def _drop(self, conn):
        """Close a connection whose request has not come whole."""
        self._stop_reading(conn)
        self.nr_conns -= 1
        conn.close()

    def _on_readable(self, conn, _sock):
        try:
            data = conn.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # the client went away
            self._drop(conn)
            return
        self._feed(conn, data)

    def _feed(self, conn, data):
        if conn.reader.feed(data):
            self._stop_reading(conn)
            self._give(conn)
        elif conn.reader.head_too_long:
            self._stop_reading(conn)
            self.nr_conns -= 1
            self._send_small(conn.sock, HEAD_TOO_LONG)
            self.linger(conn.sock)
        elif conn.reader.continue_due():
            self._send_small(conn.sock, CONTINUE)

    @staticmethod
    def _send_small(sock, data):
        """Send a few bytes without blocking: a socket's empty send buffer takes them whole."""
        try:
            sock.send(data)
        except OSError:
            pass  # the client is gone; its connection ends with its deadline or its linger

    def _give(self, conn):
        """Give conn, its request read, to a thread once its socket can take a response.

        A client that sends request after request and reads no response fills its socket; a thread
        given one more would block writing. It waits here for room instead, until its deadline.
        """
        conn.data_ready = True  # the thread must not wait for more bytes before it parses
        if conn.initialized and not _has_room(conn.sock):
            self._reading[conn] = time.monotonic() + REQUEST_READ_SECONDS
            self.poller.register(conn.sock, selectors.EVENT_WRITE, partial(self._on_writable, conn))
            return
        super().enqueue_req(conn)

    def _on_writable(self, conn, _sock):
        self._stop_reading(conn)
        super().enqueue_req(conn)

    def handle(self, conn):
        reader = getattr(conn, "reader", None)
        if reader is not None:
            conn.reader = None
            conn.sock.setblocking(True)
            conn.init()
            conn.parser.unreader.unread(reader.request())
        return super().handle(conn)

    def linger(self, sock):
        """Close sock as RFC 9112 section 9.6 asks, without blocking: send FIN now, then read and drop
        what the client still sends until it closes too, or LINGER_SECONDS pass."""
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            util.close(sock)
            return
        sock.setblocking(False)
        self._lingering[sock] = time.monotonic() + LINGER_SECONDS
        self.poller.register(sock, selectors.EVENT_READ, self._on_lingering_readable)

    def _on_lingering_readable(self, sock):
        try:
            if sock.recv(65536):
                return
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._end_linger(sock)

    def _end_linger(self, sock):
        del self._lingering[sock]
        self.poller.unregister(sock)
        util.close(sock)

    def murder_pending(self):
        """Also drop connections whose request is not complete in time (soon, when stopping), and
        end lingering closes whose time is up."""
        super().murder_pending()
        now = time.monotonic()
        for sock, deadline in list(self._lingering.items()):
            if deadline <= now:
                self._end_linger(sock)
        for conn, deadline in list(self._reading.items()):
            if not self.alive and deadline > now + STOP_KEEPALIVE_LINGER:
                deadline = self._reading[conn] = now + STOP_KEEPALIVE_LINGER
            if deadline <= now:
                self._drop(conn)
