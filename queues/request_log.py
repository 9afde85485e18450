"""The request log: one JSON line per request and per response, written off the request thread.

Entries are plain dicts handed to a QueueHandler; a QueueListener thread serialises them and
writes the file, so a request never waits on the disk and a logging failure never fails it.
"""

import logging
import queue
import re
import time
import uuid
from logging.handlers import QueueHandler, QueueListener, WatchedFileHandler

from flask import g, request
from werkzeug.exceptions import HTTPException

from queues import jsoncodec, message

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_CLIENT_REQUEST_ID = re.compile(r"[\w.:@/+=-]{1,128}")
_SECRET_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key", "x-auth-token"}
)


class _DeferredQueueHandler(QueueHandler):
    """Enqueues the record as it is: the dict is serialised later, on the listener thread."""

    def prepare(self, record):
        return record


class _JsonLineFormatter(logging.Formatter):
    def format(self, record):
        return jsoncodec.dumps(record.msg).decode()


class RequestLog:
    """Writes entries to a JSON Lines file from a background thread."""

    def __init__(self, path, max_body_bytes):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.max_body_bytes = max_body_bytes
        self._file_handler = WatchedFileHandler(path, encoding="utf-8")
        self._file_handler.setFormatter(_JsonLineFormatter())
        records = queue.SimpleQueue()
        self._handler = _DeferredQueueHandler(records)
        self._listener = QueueListener(records, self._file_handler)
        self._listener.start()
        self._closed = False

    def write(self, entry):
        """Queue one entry (a dict of plain types) for writing."""
        self._handler.handle(logging.makeLogRecord({"msg": entry}))

    def close(self):
        """Write what is queued, then stop the writer thread; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self._listener.stop()
        self._file_handler.close()


def _address(host, port):
    host = f"[{host}]" if host and ":" in host else host or "-"
    return f"{host}:{port}" if port else host


def _client_address():
    environ = request.environ
    original = environ.get("werkzeug.proxy_fix.orig", {}).get("REMOTE_ADDR")
    if original is not None and original != request.remote_addr:
        return _address(request.remote_addr, None)  # forwarded: the client's port is unknown
    return _address(request.remote_addr, environ.get("REMOTE_PORT"))


def _headers(headers):
    masked = {}
    for name, value in headers.items():
        if name.lower() in _SECRET_HEADERS:
            scheme = value.split(" ", 1)[0] if " " in value else ""
            value = f"{scheme} ***" if scheme else "***"
        masked[name] = value
    return masked


def _body(data, limit):
    """The logged form of a body: text cut to limit bytes, and metadata on its size."""
    meta = {"body_bytes": len(data)}
    if len(data) > limit:
        data = data[:limit]
        meta["body_truncated"] = True
    return data.decode("utf-8", "replace"), meta


def _request_body():
    try:
        return request.get_data(cache=True)
    except HTTPException:
        return b""  # too large or cut off: the response line says which


def _start_request():
    client_id = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = client_id if _CLIENT_REQUEST_ID.fullmatch(client_id) else uuid.uuid4().hex
    g.request_started = time.time()
    g.request_started_monotonic = time.perf_counter()


def _line(ts, direction, source, destination, headers, metadata, body):
    return {
        "ts": message.iso_timestamp(ts),
        "request_id": g.request_id,
        "direction": direction,
        "source": source,
        "destination": destination,
        "method": request.method,
        "path": request.path,
        "headers": _headers(headers),
        "metadata": metadata,
        "body": body,
    }


def _entries(response, max_body_bytes):
    """The request line and the response line of the current request."""
    user = g.get("flask_httpauth_user")
    who = {
        "user": user.name if user else None,
        "role": user.role if user else None,
        "query": request.query_string.decode("latin-1"),
    }
    client = _client_address()
    server = _address(request.environ.get("SERVER_NAME"), request.environ.get("SERVER_PORT"))
    request_body, request_meta = _body(_request_body(), max_body_bytes)
    response_data = b"" if response.is_streamed else response.get_data()
    response_body, response_meta = _body(response_data, max_body_bytes)
    duration_ms = round((time.perf_counter() - g.request_started_monotonic) * 1000, 3)
    response_meta = {**who, "status": response.status_code, "duration_ms": duration_ms, **response_meta}
    return (
        _line(
            g.request_started,
            "request",
            client,
            server,
            request.headers,
            {**who, **request_meta},
            request_body,
        ),
        _line(time.time(), "response", server, client, response.headers, response_meta, response_body),
    )


def init_app(app, request_log):
    """Log every request and response of app to request_log and tag each with X-Request-ID."""

    @app.after_request
    def _log_exchange(response):
        if "request_id" not in g:  # a before_request hook failed before ours ran
            _start_request()
        response.headers[REQUEST_ID_HEADER] = g.request_id
        try:
            for entry in _entries(response, request_log.max_body_bytes):
                request_log.write(entry)
        except Exception:
            log.exception("request %s could not be logged", g.request_id)
        return response

    app.before_request(_start_request)
    app.extensions["queues.request_log"] = request_log
