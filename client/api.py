"""QueueClient: every route of the service over one keep-alive session."""

import random
import time
from dataclasses import dataclass

import requests

from client.errors import QueueError, error_from_response

WAIT_MARGIN_SECONDS = 10


@dataclass(frozen=True)
class Retry:
    """Retry answers with these codes, with exponential backoff and jitter, within bounds."""

    attempts: int = 5
    backoff: float = 0.2
    max_backoff: float = 5.0
    codes: tuple = ("queue_full", "storage_unavailable")

    def delay(self, attempt):
        return random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))


class QueueClient:
    """The queue service at base_url, as user. Errors raise QueueError subclasses; with retry, the
    codes it names are retried before raising."""

    def __init__(self, base_url, user, password, timeout=10.0, retry=None):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retry = retry
        self._session = requests.Session()
        self._session.auth = (user, password)

    def close(self):
        self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _call(self, method, path, body=None, params=None, timeout=None):
        attempt = 0
        while True:
            try:
                response = self._session.request(
                    method, self.base_url + path, json=body, params=params, timeout=timeout or self.timeout
                )
            except requests.RequestException as exc:
                raise QueueError(None, "unreachable", str(exc)) from exc
            if response.status_code < 400:
                return response
            error = error_from_response(response)
            retry = self.retry
            if retry is None or error.code not in retry.codes or attempt + 1 >= retry.attempts:
                raise error
            time.sleep(retry.delay(attempt))
            attempt += 1

    def health(self):
        """The /health body (also when it says degraded)."""
        response = self._session.get(self.base_url + "/health", timeout=self.timeout)
        return response.json()

    def openapi(self):
        """The OpenAPI document, as YAML text."""
        return self._call("GET", "/openapi.yaml").text

    def list_queues(self):
        return self._call("GET", "/queues").json()["queues"]

    def create_queue(self, name, max_messages=None, schema=None, max_deliveries=None, dead_letter_queue=None):
        body = {"name": name, "max_messages": max_messages, "schema": schema,
                "max_deliveries": max_deliveries, "dead_letter_queue": dead_letter_queue}  # fmt: skip
        return self._call("POST", "/queues", {k: v for k, v in body.items() if v is not None}).json()

    def get_queue(self, name):
        return self._call("GET", f"/queues/{name}").json()

    def delete_queue(self, name):
        return self._call("DELETE", f"/queues/{name}").json()["deleted_messages"]

    def push(self, queue, message):
        """Push one message (a dict); returns its id."""
        return self._call("POST", f"/queues/{queue}/push", {"message": message}).json()["id"]

    def push_batch(self, queue, messages):
        """Push a list of messages, all or none; returns their ids."""
        return self._call("POST", f"/queues/{queue}/push", {"messages": list(messages)}).json()["ids"]

    def pull(self, queue, max=None, wait=None, lease=None):  # noqa: A002 - the API's own name
        """One message dict (or None when none came); with max, a list of them (maybe empty)."""
        params = {k: v for k, v in {"max": max, "wait": wait, "lease": lease}.items() if v is not None}
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

    def nack(self, queue, receipt):
        return self._call("POST", f"/queues/{queue}/nack", {"receipt": receipt}).json()

    def extend(self, queue, receipt, lease):
        return self._call("POST", f"/queues/{queue}/extend", {"receipt": receipt, "lease": lease}).json()
