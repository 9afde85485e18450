"""Sources answered 429 whose next requests wait a short pause before the worker reads them.

A client that floods wrong passwords gets cheap 429s, but as fast as it can send: each still costs
a thread, the app, the metrics and the request log. Its next request (on any connection) is not
read until the pause has passed; the connection waits in the worker's event loop (see
queues.http_worker), holding no thread, so a flooder that waits for its answers sends far fewer
requests. The request is then served as usual (still throttled, still logged).

Only when the service is served directly: behind a proxy the connection's peer is the proxy,
shared by every client.
"""

import threading
import time

# Shorter than any Retry-After the service sends (at least 1 s): a client that waits as told is
# never held.
PAUSE_SECONDS = 0.9
# Sources remembered at most; beyond it the oldest are forgotten (bounded memory).
MAX_SOURCES = 100_000


class Tarpit:
    """When each held source's pause ends; thread-safe (the app holds, the event loop asks)."""

    def __init__(self, pause_seconds=PAUSE_SECONDS, clock=time.monotonic):
        self._pause = pause_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._until = {}  # source -> end of its pause; insertion order = oldest hold first

    def hold(self, source):
        """Pause source's next requests from now."""
        now = self._clock()
        with self._lock:
            self._until.pop(source, None)
            while self._until:  # the pause is fixed: the first to end are the first held
                oldest = next(iter(self._until))
                if self._until[oldest] > now and len(self._until) < MAX_SOURCES:
                    break
                del self._until[oldest]
            self._until[source] = now + self._pause

    def until(self, source):
        """When source's pause ends, or None when it is not held."""
        with self._lock:
            until = self._until.get(source)
        return until if until is not None and until > self._clock() else None
