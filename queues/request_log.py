"""The request log: one JSON line per request and per response, written off the request thread.

The request thread only captures an Exchange (a copy of the WSGI environ, the bodies, the response
headers); the writer thread (queues.log_writer) derives everything else and writes the two lines,
so a request never waits on the disk, and a logging failure never fails it.
"""

import itertools
import logging
import os
import re
import secrets
import time
from functools import lru_cache
from typing import NamedTuple
from urllib.parse import unquote_plus

from flask import g, request
from werkzeug.exceptions import HTTPException

from queues import jsoncodec, message
from queues.log_writer import LogWriter

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-ID"
_CLIENT_REQUEST_ID = re.compile(r"[\w.:@/+=-]{1,128}")
# Headers and query parameters whose name holds one of these (any case) are logged as ***.
_SECRET_NAME = re.compile(r"token|secret|password|passwd|key|auth|session|cookie", re.IGNORECASE)
_NOT_SECRET = frozenset({"idempotency-key", "www-authenticate"})
_CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization"})
# Of a credential header, only a known scheme's name is kept ("Basic ***").
_KNOWN_SCHEMES = frozenset(
    {"basic", "bearer", "digest", "negotiate", "ntlm", "hoba", "mutual", "aws4-hmac-sha256"}
)
MASK = "***"


def _new_id_prefix():
    """Request ids: a random per-process prefix and a counter (unique, and no system call per request).

    Drawn again in every forked child: gunicorn's master imports this module before it forks the
    workers, which would otherwise all share one prefix and hand out the same ids.
    """
    global _ID_PREFIX, _id_counter
    _ID_PREFIX = secrets.token_hex(8)
    _id_counter = itertools.count(1)


_new_id_prefix()
os.register_at_fork(after_in_child=_new_id_prefix)


class Exchange(NamedTuple):
    """What the request thread captures of one request and its response."""

    request_id: str
    started: float
    finished: float
    duration_ms: float
    environ: dict
    user: str | None
    role: str | None
    request_body: bytes
    status: int
    response_headers: list
    response_body: bytes


def _address(host, port):
    host = f"[{host}]" if host and ":" in host else host or "-"
    return f"{host}:{port}" if port else host


def _client_address(environ):
    remote = environ.get("REMOTE_ADDR")
    original = environ.get("werkzeug.proxy_fix.orig", {}).get("REMOTE_ADDR")
    if original is not None and original != remote:
        return _address(remote, None)  # forwarded: the client's port is unknown
    return _address(remote, environ.get("REMOTE_PORT"))


# Clients send the same few header names on every request: the writer thread names and classifies
# each once (bounded, so a flood of made-up names costs bounded memory).
@lru_cache(maxsize=1024)
def _header_name(environ_key):
    """The HTTP name of a WSGI environ key (HTTP_X_REQUEST_ID: X-Request-Id), or None if not a header."""
    if environ_key.startswith("HTTP_"):
        return environ_key[5:].replace("_", "-").title()
    if environ_key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        return environ_key.replace("_", "-").title()
    return None


def _request_headers(environ):
    """The request's headers as sent, named as HTTP names them (from the WSGI environ)."""
    headers = []
    for key, value in environ.items():
        name = _header_name(key)
        if name is not None and (value or key.startswith("HTTP_")):
            headers.append((name, value))
    return headers


@lru_cache(maxsize=1024)
def _is_secret(name):
    return name.lower() not in _NOT_SECRET and _SECRET_NAME.search(name) is not None


def _masked(headers):
    masked = {}
    for name, value in headers:
        if name.lower() in _CREDENTIAL_HEADERS:
            scheme = value.split(" ", 1)[0]
            value = f"{scheme} {MASK}" if scheme.lower() in _KNOWN_SCHEMES and " " in value else MASK
        elif _is_secret(name):
            value = MASK
        masked[name] = value
    return masked


def _masked_query(query):
    """The query string with the value of every secret-named parameter replaced by ***."""
    if not _SECRET_NAME.search(unquote_plus(query)):
        return query
    parts = []
    for part in query.split("&"):
        name, sep, _ = part.partition("=")
        parts.append(f"{name}={MASK}" if _is_secret(unquote_plus(name)) else part)
    return "&".join(parts)


def _body(data, limit):
    """The logged form of a body: text cut to limit bytes, and metadata on its size."""
    meta = {"body_bytes": len(data)}
    if len(data) > limit:
        data = data[:limit]
        meta["body_truncated"] = True
    return data.decode("utf-8", "replace"), meta


class _ExchangeFormatter(logging.Formatter):
    """Turns an Exchange into its request line and response line, on the writer thread."""

    def __init__(self, max_body_bytes):
        super().__init__()
        self.max_body_bytes = max_body_bytes

    def format(self, record):
        x = record  # the "record" is the Exchange itself: no LogRecord is made per request
        environ = x.environ
        client = _client_address(environ)
        server = _address(environ.get("SERVER_NAME"), environ.get("SERVER_PORT"))
        query = environ.get("QUERY_STRING", "").encode("latin-1").decode("utf-8", "replace")
        who = {"user": x.user, "role": x.role, "query": _masked_query(query)}
        common = {
            "request_id": x.request_id,
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace") or "/",
        }
        request_body, request_meta = _body(x.request_body, self.max_body_bytes)
        response_body, response_meta = _body(x.response_body, self.max_body_bytes)
        request_line = {
            "ts": message.iso_timestamp(x.started),
            "request_id": x.request_id,
            "direction": "request",
            "source": client,
            "destination": server,
            **common,
            "headers": _masked(_request_headers(environ)),
            "metadata": {**who, **request_meta},
            "body": request_body,
        }
        response_line = {
            "ts": message.iso_timestamp(x.finished),
            "request_id": x.request_id,
            "direction": "response",
            "source": server,
            "destination": client,
            **common,
            "headers": _masked(x.response_headers),
            "metadata": {**who, "status": x.status, "duration_ms": x.duration_ms, **response_meta},
            "body": response_body,
        }
        return (jsoncodec.dumps(request_line) + b"\n" + jsoncodec.dumps(response_line)).decode()


class RequestLog(LogWriter):
    """The request log file, fed with Exchanges."""

    def __init__(self, path, max_body_bytes, on_drop=lambda lines: None):
        super().__init__(path, _ExchangeFormatter(max_body_bytes), on_drop)


def _request_body(req):
    try:
        return req.get_data(cache=True)
    except HTTPException:
        return b""  # too large or cut off: the response line says which


def _start_request():
    client_id = request.environ.get("HTTP_X_REQUEST_ID", "")
    g.request_id = (
        client_id if _CLIENT_REQUEST_ID.fullmatch(client_id) else f"{_ID_PREFIX}{next(_id_counter):016x}"
    )
    g.request_started = time.time()
    g.request_started_monotonic = time.perf_counter()


def _exchange(response):
    """Capture the current request and its response; the writer thread does the rest."""
    req = request._get_current_object()  # one proxy lookup instead of one per attribute
    user = g.get("flask_httpauth_user")
    return Exchange(
        request_id=g.request_id,
        started=g.request_started,
        finished=time.time(),
        duration_ms=round((time.perf_counter() - g.request_started_monotonic) * 1000, 3),
        environ=req.environ.copy(),
        # A failed login is logged under the name it tried.
        user=user.name if user else (req.authorization.username if req.authorization else None),
        role=user.role if user else None,
        request_body=_request_body(req),
        status=response.status_code,
        response_headers=list(response.headers.items()),
        response_body=b"" if response.is_streamed else response.get_data(),
    )


def init_app(app, request_log):
    """Log every request and response of app to request_log and tag each with X-Request-ID."""

    @app.after_request
    def _log_exchange(response):
        if "request_id" not in g:  # a before_request hook failed before ours ran
            _start_request()
        response.headers[REQUEST_ID_HEADER] = g.request_id
        try:
            request_log.write(_exchange(response))
        except Exception:
            log.exception("request %s could not be logged", g.request_id)
        return response

    app.before_request(_start_request)
    app.extensions["queues.request_log"] = request_log


def health(request_log):
    """(failing, details) of the request log for /health: an instance that cannot keep its audit
    log is degraded, so that a load balancer routes around it."""
    failure = request_log.failure
    return failure is not None, {"last_error": failure, "dropped_lines": request_log.dropped}
