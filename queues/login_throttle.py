"""Limits on password guessing: failed logins per source address, and how many slow hashes run at once.

With the memory backend (one worker) failures are counted in the process; with Redis (several
workers, perhaps several instances) in Redis, so that every worker sees every failure.
"""

import logging
import math
import os
import secrets
import threading
import time
from collections import deque

import redis

from queues.errors import TooManyRequests

log = logging.getLogger(__name__)
REDIS_KEY_PREFIX = "queues:failed_logins:"

# Sources tracked at most; beyond it the oldest are forgotten (a flood of addresses costs bounded memory).
MAX_SOURCES = 100_000


class FailedLogins:
    """A sliding window of failed-login times per source address; thread-safe."""

    def __init__(self, max_failures, window_seconds, clock=time.monotonic):
        self._max = max_failures
        self._window = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = {}  # source -> deque of times, oldest first; insertion order = first failure

    def _recent(self, source, now):
        times = self._failures.get(source)
        while times and times[0] <= now - self._window:
            times.popleft()
        if times is not None and not times:
            del self._failures[source]
            return None
        return times

    def check(self, source):
        """Raise TooManyRequests (with Retry-After) while source has used up its failures."""
        now = self._clock()
        with self._lock:
            times = self._recent(source, now)
            if times is None or len(times) < self._max:
                return
            oldest = times[0]
        _refuse(oldest + self._window - now)

    def fail(self, source):
        """Record one failed login of source."""
        now = self._clock()
        with self._lock:
            times = self._recent(source, now)
            if times is None:
                if len(self._failures) >= MAX_SOURCES:
                    del self._failures[next(iter(self._failures))]
                times = self._failures[source] = deque()
            times.append(now)
            if len(times) > self._max:
                times.popleft()


def _refuse(wait):
    """Raise the 429 for a source whose oldest counted failure leaves the window in wait seconds."""
    raise TooManyRequests(
        "too many failed logins from this address; try again later", max(1, math.ceil(wait))
    )


class SharedFailedLogins:
    """FailedLogins kept in Redis (a sorted set of failure times per source), shared by every worker.

    While Redis cannot be reached, each process counts on its own (logins must not fail for that).
    """

    def __init__(self, url, max_failures, window_seconds):
        self._redis = redis.Redis.from_url(url, socket_timeout=2)
        self._max = max_failures
        self._window = window_seconds
        self._local = FailedLogins(max_failures, window_seconds)

    def _key(self, source):
        return REDIS_KEY_PREFIX + source

    def check(self, source):
        # One command on every request (the failures within the window); the oldest, for Retry-After,
        # only when the source is refused. fail() keeps the set to the newest max_failures entries.
        now = time.time()
        key = self._key(source)
        try:
            count = self._redis.zcount(key, f"({now - self._window}", "+inf")
            if count < self._max:
                return
            oldest = self._redis.zrangebyscore(key, f"({now - self._window}", "+inf", 0, 1, withscores=True)
        except redis.RedisError as exc:
            log.warning("failed logins: Redis unreachable (%s); counting in this process", exc)
            return self._local.check(source)
        if oldest:
            _refuse(oldest[0][1] + self._window - now)

    def fail(self, source):
        now = time.time()
        key = self._key(source)
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.zadd(key, {f"{now}:{secrets.token_hex(4)}": now})
            pipe.zremrangebyrank(key, 0, -self._max - 1)  # only the newest max_failures matter
            pipe.expire(key, math.ceil(self._window))
            pipe.execute()
        except redis.RedisError:
            self._local.fail(source)


class HashSlots:
    """At most `slots` slow hashes at once, and at most `admitted` (running or waiting, by default
    twice slots); the rest get 429."""

    def __init__(self, slots, admitted=None):
        self._running = threading.BoundedSemaphore(slots)
        self._admitted = threading.BoundedSemaphore(max(admitted or 0, 2 * slots))

    def __enter__(self):
        if not self._admitted.acquire(blocking=False):
            raise TooManyRequests("too many logins are being checked; try again in a second", 1)
        self._running.acquire()
        return self

    def __exit__(self, *exc):
        self._running.release()
        self._admitted.release()


def hash_slots_for(threads, cpus=None):
    """HashSlots for a worker of threads: half the threads may wait for or run the hash, so half
    stay free; a quarter of them may run it at once, and no more than half the CPUs (at least one):
    the hash releases the GIL and keeps a CPU busy for its whole 0.1 s, so more at once would leave
    none for the requests of everyone else.
    """
    cpus = cpus or _usable_cpus()
    return HashSlots(max(1, min(threads // 4, cpus // 2)), threads // 2)


def _usable_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on every platform
        return os.cpu_count() or 1
