"""QueueClient: every route of the service over one keep-alive session."""

import random
import time
import uuid
from dataclasses import dataclass

import requests

from client.errors import QueueError, error_from_response

WAIT_MARGIN_SECONDS = 10
IDEMPOTENCY_HEADER = "Idempotency-Key"


@dataclass(frozen=True)
class Retry:
    """Retry answers with these codes, with exponential backoff and jitter, within bounds.

    `unreachable` (no answer: refused, reset, timed out) is retried only for requests that are safe
    to repeat: reads, and pushes, which carry the same idempotency key on every attempt.
    """

    attempts: int = 5
    backoff: float = 0.2
    max_backoff: float = 5.0
    codes: tuple = ("queue_full", "storage_unavailable", "unreachable")

    def delay(self, attempt):
        return random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))


def new_idempotency_key():
    """A fresh key for one push (kept for all of its retries)."""
    return uuid.uuid4().hex


# What went wrong, in words, for the commonest failures; requests' own text runs to several lines.
_KNOWN_FAILURES = ("connection refused", "connection reset", "connection aborted", "timed out",
                   "name or service not known")  # fmt: skip


def _why(exc):
    """A short reason for a request that got no answer."""
    text = str(exc).lower()
    return next((known for known in _KNOWN_FAILURES if known in text), type(exc).__name__)


def _without_none(values):
    return {k: v for k, v in values.items() if v is not None}


class QueueClient:
    """The queue service at base_url, as user (None: no credentials, for /health). Errors raise
    QueueError subclasses; with retry, the codes it names are retried before raising."""

    def __init__(self, base_url, user, password, timeout=10.0, retry=None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry
        self._session = requests.Session()
        self._session.auth = (user, password) if user is not None else None

    def close(self):
        self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _call(self, method, path, body=None, params=None, timeout=None, headers=None, repeatable=None):
        """One request, retried as self.retry says; every attempt sends the same headers."""
        repeatable = method == "GET" if repeatable is None else repeatable
        attempt = 0
        while True:
            try:
                response = self._session.request(
                    method, self.base_url + path, json=body, params=params, headers=headers,
                    timeout=timeout or self.timeout,
                )  # fmt: skip
            except requests.RequestException as exc:
                error = QueueError(None, "unreachable", f"{method} {self.base_url}{path}: {_why(exc)}")
                error.__cause__ = exc
            else:
                if response.status_code < 400:
                    return response
                error = error_from_response(response)
            if not self._retries(error, attempt, repeatable):
                raise error
            time.sleep(self.retry.delay(attempt))
            attempt += 1

    def _retries(self, error, attempt, repeatable):
        retry = self.retry
        if retry is None or error.code not in retry.codes or attempt + 1 >= retry.attempts:
            return False
        return error.code != "unreachable" or repeatable

    def health(self):
        """The /health body (also when it says degraded)."""
        try:
            response = self._session.get(self.base_url + "/health", timeout=self.timeout)
            return response.json()
        except (requests.RequestException, ValueError) as exc:
            raise QueueError(None, "unreachable", f"GET {self.base_url}/health: {_why(exc)}") from exc

    def openapi(self):
        """The OpenAPI document, as YAML text."""
        return self._call("GET", "/openapi.yaml").text

    def list_queues(self):
        return self._call("GET", "/queues").json()["queues"]

    def create_queue(self, name, max_messages=None, schema=None, max_deliveries=None, dead_letter_queue=None):
        body = {"name": name, "max_messages": max_messages, "schema": schema,
                "max_deliveries": max_deliveries, "dead_letter_queue": dead_letter_queue}  # fmt: skip
        return self._call("POST", "/queues", _without_none(body)).json()

    def get_queue(self, name):
        return self._call("GET", f"/queues/{name}").json()

    def delete_queue(self, name):
        return self._call("DELETE", f"/queues/{name}").json()["deleted_messages"]

    def push(self, queue, message, key=None):
        """Push one message (a dict); returns its id. key: the Idempotency-Key (default: a fresh one)."""
        return self.push_reply(queue, {"message": message}, key)["id"]

    def push_batch(self, queue, messages, key=None):
        """Push a list of messages, all or none; returns their ids. key as for push."""
        return self.push_reply(queue, {"messages": list(messages)}, key)["ids"]

    def push_reply(self, queue, body, key=None):
        """POST body to the queue's push route under one idempotency key; returns the whole reply.

        A retry after a lost reply sends the same key, so the server answers the first push's reply
        again instead of adding the messages twice."""
        headers = {IDEMPOTENCY_HEADER: key or new_idempotency_key()}
        return self._call("POST", f"/queues/{queue}/push", body, headers=headers, repeatable=True).json()

    def pull(self, queue, max=None, wait=None, lease=None):  # noqa: A002 - the API's own name
        """One message dict (or None when none came); with max, a list of them (maybe empty)."""
        params = _without_none({"max": max, "wait": wait, "lease": lease})
        response = self._call("POST", f"/queues/{queue}/pull", params=params,
                              timeout=(wait or 0) + WAIT_MARGIN_SECONDS + self.timeout)  # fmt: skip
        if response.status_code == 204:
            return [] if max is not None else None
        body = response.json()
        return body["messages"] if max is not None else body

    def ack(self, queue, receipts):
        """Acknowledge one receipt or a list of them, all or none; returns how many."""
        body = {"receipt": receipts} if isinstance(receipts, str) else {"receipts": list(receipts)}
        return self._call("POST", f"/queues/{queue}/ack", body).json()["acked"]

    def nack(self, queue, receipt, delay=None, reason=None):
        """Give a leased message back: at once, or hidden delay more seconds; reason is kept with it."""
        body = _without_none({"receipt": receipt, "delay": delay, "reason": reason})
        return self._call("POST", f"/queues/{queue}/nack", body).json()

    def extend(self, queue, receipt, lease):
        return self._call("POST", f"/queues/{queue}/extend", {"receipt": receipt, "lease": lease}).json()

    def browse(self, queue, limit=None, offset=None, leased=False):
        """{"messages": [...], "total": N}: the available (or, leased=True, in-flight) messages,
        in pull order, without taking any."""
        params = _without_none({"limit": limit, "offset": offset, "state": "leased" if leased else None})
        return self._call("GET", f"/queues/{queue}/messages", params=params).json()

    def purge(self, queue):
        """Remove every message, leased ones included; returns how many went."""
        return self._call("POST", f"/queues/{queue}/purge", {}).json()["purged_messages"]

    def redrive(self, queue, max=None, to=None):  # noqa: A002 - the API's own name
        """Move dead letters back to their source queues (or all to `to`); returns the reply,
        {"moved", "remaining", "by_queue"}."""
        return self._call("POST", f"/queues/{queue}/redrive", _without_none({"max": max, "to": to})).json()
