"""The Redis queue backend: the memory backend's operations (queues.backend), on a shared Redis.

Each operation is one call of a Lua script (redis_queues.lua), which Redis runs atomically, so any
number of gunicorn workers and service instances can share the queues with the memory backend's
guarantees. A long poll blocks on the queue's wake list (BLPOP), which every push and every
returned lease feeds with one token per message.
"""

import contextlib
import secrets
import struct
import threading
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from queues import jsoncodec, message, redrive
from queues.backend import ANY_SCHEMA, UNLIMITED_WAITERS, check_queue_name
from queues.errors import (
    BadDeadLetterQueue,
    IdempotencyKeyReused,
    QueueExists,
    QueueFull,
    QueueInUse,
    QueueNotFound,
    ReceiptInvalid,
    SchemaChanged,
    StorageUnavailable,
)
from queues.fifo import Lease
from queues.queue_info import STORED, TOTALS, queue_info
from queues.sweeper import LeaseSweeper

KEY_PREFIX = "queues:"
SCRIPT = (
    (Path(__file__).with_name("redis_queues.lua"))
    .read_text()
    .replace("--[[STORED]]", ", ".join(f"'{field}'" for field in STORED))
)
# A long poll blocks in slices this long, so that a stopping server ends it soon.
WAIT_SLICE_SECONDS = 1.0
SOCKET_TIMEOUT_SECONDS = 5.0
# How long a worker answers require() and schema_of() from its own copy instead of asking Redis
# (one round trip less per request). Safe because every script checks again that the queue exists,
# and a push checks that its schema is still the queue's (SchemaChanged); a copy this old only
# decides whether a bad request to a queue deleted meanwhile by another worker is told 400 or 404.
METADATA_SECONDS = 1.0
# Copies kept at most (queues come and go): past it, all are dropped and asked for again.
MAX_METADATA = 10_000
# Redis errors that say "not now" rather than "this command is wrong": redis-py raises some as their
# own classes (with the code stripped from the message), the others as a ResponseError with the code.
_TRANSIENT_ERRORS = (
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.MasterDownError,
    redis.exceptions.TryAgainError,
)
_TRANSIENT_REPLIES = ("MISCONF", "BUSY", "NOREPLICAS")


@contextlib.contextmanager
def _redis_errors():
    """Turn Redis being away (or refusing writes) into the API's 503 storage_unavailable."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise StorageUnavailable(f"redis is unavailable ({exc}); try again") from exc
    except redis.ResponseError as exc:
        if isinstance(exc, _TRANSIENT_ERRORS) or str(exc).startswith(_TRANSIENT_REPLIES):
            raise StorageUnavailable(f"redis refused the change ({exc}); try again") from exc
        raise


def _optional(value):
    return None if value in (b"", None) else value.decode()


def _format_raw_id(raw):
    """The API's form of a stored message's first 8 bytes (its little-endian id)."""
    return message.format_id(int.from_bytes(raw, "little"))


def _number_or_none(value):
    return None if value in (b"", None) else int(value)


def _note(raw):
    """A message's note from its JSON in Redis ('' for none)."""
    return jsoncodec.loads(raw) if raw else None


def _enqueued_at(head):
    """The enqueue time in the first 16 bytes of the head message, or None ('' for an empty queue)."""
    return struct.unpack_from("<d", head, 8)[0] if head else None


# How each STORED field comes back from Redis (a hash field: bytes, and b"" for None).
_DECODE_STORED = {
    "max_messages": int,
    "schema": _optional,
    "max_deliveries": _number_or_none,
    "dead_letter_queue": _optional,
    "created_at": float,
    **dict.fromkeys(TOTALS, int),
}


class RedisQueueManager:
    """All queues, kept in Redis. Thread-safe; raises the API's errors like MemoryQueueManager."""

    def __init__(self, url, connections, max_waiting=UNLIMITED_WAITERS, prefix=KEY_PREFIX, clock=None):
        """clock: None for Redis's own clock for leases (the one every instance shares), or a
        function returning wall-clock seconds, used for every time (tests step one by hand)."""
        self._redis = redis.Redis.from_url(
            url,
            max_connections=connections,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
            # No retries: a script that ran but whose reply was lost must not run twice.
            retry=Retry(NoBackoff(), 0),
        )
        self._script = self._redis.register_script(SCRIPT)
        self._prefix = prefix
        self._clock = clock
        self._now = clock or time.time  # enqueue and creation times
        self._waiting = threading.BoundedSemaphore(max_waiting)
        self._closed = False
        self._waits_released = False
        self._waiting_by_queue = {}  # long polls waiting now on this instance, by queue name
        self._waiting_lock = threading.Lock()
        self._metadata = {}  # queue name -> (schema, monotonic time until which the copy is used)

    def _run(self, operation, *args):
        """Run one operation of the script; returns (status, values): status is "ok" or an error code."""
        with _redis_errors():
            now_ms = "" if self._clock is None else int(self._clock() * 1000)
            reply = self._script(args=(operation, self._prefix, now_ms, *args))
        status = reply[0].decode()
        if status in ("queue_not_found", "schema_changed"):
            self._metadata.pop(args[0], None)  # every operation that answers these is given the name first
        return status, reply[1:]

    def _change(self, operation, *args):
        """Run a script that changes the state; refused once the service is stopping."""
        if self._closed:
            raise StorageUnavailable("the service is shutting down; nothing was changed")
        return self._run(operation, *args)

    def health(self):
        """(failing, details) for GET /health: failing while Redis does not answer."""
        try:
            with _redis_errors():
                self._redis.ping()
        except StorageUnavailable as exc:
            return True, {"storage": {"backend": "redis", "last_error": str(exc)}}
        return False, {"storage": {"backend": "redis", "last_error": None}}

    def release_waits(self):
        """End every long poll within a wait slice and let none start: the server is stopping."""
        self._waits_released = True

    def close(self):
        """Refuse every change from now on and let go of the connections."""
        self._closed = True
        self.release_waits()
        self._redis.close()

    # --- lookup -----------------------------------------------------------------------------

    def count(self):
        """How many queues there are."""
        with _redis_errors():
            return self._redis.scard(self._prefix + "names")

    def require(self, name):
        """Raise InvalidQueueName or QueueNotFound unless the queue exists (as of METADATA_SECONDS ago)."""
        self.schema_of(name)

    def schema_of(self, name):
        """The name of the queue's message schema, or None (as of METADATA_SECONDS ago)."""
        check_queue_name(name)
        copy = self._metadata.get(name)
        if copy is not None and copy[1] > time.monotonic():
            return copy[0]
        with _redis_errors():
            found, schema = self._redis.hmget(self._meta_key(name), "max_messages", "schema")
        if found is None:
            self._metadata.pop(name, None)
            raise QueueNotFound(name)
        if len(self._metadata) >= MAX_METADATA:
            self._metadata.clear()
        self._metadata[name] = (_optional(schema), time.monotonic() + METADATA_SECONDS)
        return _optional(schema)

    def _meta_key(self, name):
        return f"{self._prefix}q:{name}:meta"

    def info(self, name):
        """The queue's QueueInfo."""
        check_queue_name(name)
        infos = self._infos(name)
        if not infos:
            raise QueueNotFound(name)
        return infos[0]

    def list(self):
        """QueueInfo of every queue, sorted by name (code point order)."""
        return sorted(self._infos(), key=lambda info: info["name"])

    def _infos(self, *names):
        infos = []
        for name, size, in_flight, head, *fields in self._run("info", *names)[1]:
            stored = {
                field: _DECODE_STORED[field](value) for field, value in zip(STORED, fields, strict=True)
            }
            with self._waiting_lock:
                waiting = self._waiting_by_queue.get(name.decode(), 0)
            infos.append(queue_info(name.decode(), size, in_flight, stored, _enqueued_at(head), waiting))
        return infos

    # --- queues -----------------------------------------------------------------------------

    def create(self, name, max_messages, schema=None, max_deliveries=None, dead_letter_queue=None):
        """Create an empty queue and return its info; raises QueueExists or InvalidRequest."""
        check_queue_name(name)
        status, _ = self._change(
            "create",
            name,
            max_messages,
            schema or "",
            repr(self._now()),
            "" if max_deliveries is None else max_deliveries,
            dead_letter_queue or "",
        )
        if status == "queue_exists":
            raise QueueExists(name)
        if status == "dead_letter_queue_missing":
            raise BadDeadLetterQueue.missing(dead_letter_queue)
        if status == "dead_letter_queue_chained":
            raise BadDeadLetterQueue.chained(dead_letter_queue)
        return self.info(name)

    def delete(self, name):
        """Delete a queue with its messages; return how many messages went with it."""
        check_queue_name(name)
        status, reply = self._change("delete", name)
        self._metadata.pop(name, None)
        if status == "queue_not_found":
            raise QueueNotFound(name)
        if status == "queue_in_use":
            raise QueueInUse.as_dead_letter_queue(name, [user.decode() for user in reply])
        return reply[0]

    # --- messages ---------------------------------------------------------------------------

    def push(self, name, bodies, idempotency=None, schema=ANY_SCHEMA):
        """Append the JSON bodies in order, all or none; return (ids, size after, replayed).

        With idempotency (a queues.backend.Idempotency), the key's check and record are in the
        same script call as the push, so two pushes with one key never both add; so is the check
        that schema (unless ANY_SCHEMA) is still the queue's.
        """
        check_queue_name(name)
        key, digest, lifetime_ms = ("", "", 0)
        if idempotency is not None:
            key, digest, lifetime_ms = idempotency.key, idempotency.digest, idempotency.seconds * 1000
        checked = "" if schema is ANY_SCHEMA else "=" + (schema or "")
        now = repr(self._now())
        status, reply = self._change("push", name, now, key, digest, lifetime_ms, checked, *bodies)
        if status == "queue_not_found":
            raise QueueNotFound(name)
        if status == "schema_changed":
            raise SchemaChanged(name)
        if status == "queue_full":
            held, max_messages = reply
            raise QueueFull.no_room(name, held, max_messages, len(bodies))
        if status == "idempotency_key_reused":
            raise IdempotencyKeyReused(name)
        size, first = reply[0], int(reply[1])
        count = reply[2] if status == "replayed" else len(bodies)
        return [message.format_id(first + i) for i in range(count)], size, status == "replayed"

    def pull(self, name, count=1, wait=0.0, lease=None):
        """Hand out up to count messages from the head, waiting up to wait seconds for one.

        Without lease they are removed; with lease (seconds) they stay in flight until acked.
        Returns their pulled forms as JSON bytes.
        """
        check_queue_name(name)
        deadline = time.monotonic() + wait
        receipts = [secrets.token_urlsafe(12) for _ in range(count)] if lease is not None else ()
        pulled = self._pull_now(name, count, lease, receipts)
        if pulled or wait <= 0 or not self._waiting.acquire(blocking=False):
            return pulled
        self._count_waiting(name, 1)
        try:
            wake_key = f"{self._prefix}q:{name}:wake"
            while not pulled and not self._waits_released:
                remaining = deadline - time.monotonic()
                # Below a millisecond, Redis before 7.0.8 would read the timeout as 0: for ever.
                if remaining < 0.001:
                    break
                with _redis_errors():
                    self._redis.blpop([wake_key], timeout=min(remaining, WAIT_SLICE_SECONDS))
                pulled = self._pull_now(name, count, lease, receipts)
        finally:
            self._count_waiting(name, -1)
            self._waiting.release()
        return pulled

    def _count_waiting(self, name, change):
        with self._waiting_lock:
            waiting = self._waiting_by_queue.get(name, 0) + change
            if waiting:
                self._waiting_by_queue[name] = waiting
            else:
                del self._waiting_by_queue[name]

    def _pull_now(self, name, count, lease, receipts):
        status, reply = self._change("pull", name, count, "" if lease is None else lease, *receipts)
        if status == "queue_not_found":
            raise QueueNotFound(name)
        if lease is None:
            return [
                message.render(stored, message.note_members(_note(note)))
                for stored, note in zip(reply[::2], reply[1::2], strict=True)
            ]
        if not reply:
            return []
        expires_at = reply[0] / 1000
        return [
            Lease(stored, receipt, expires_at, deliveries).render(_note(note))
            for receipt, stored, deliveries, note in zip(
                receipts, reply[1::3], reply[2::3], reply[3::3], strict=False
            )
        ]

    def ack(self, name, receipts):
        """End these leases for good, all or none; returns how many. Raises ReceiptInvalid."""
        check_queue_name(name)
        status, reply = self._change("ack", name, *receipts)
        if status == "queue_not_found":
            raise QueueNotFound(name)
        if status == "receipt_invalid":
            raise ReceiptInvalid.in_batch(reply)
        return reply[0]

    def nack(self, name, receipt, delay=0, reason=None):
        """End a lease: the message goes back to the head (after delay seconds, still leased under
        a receipt no worker holds until then), or to the dead-letter queue; reason stays with it."""
        check_queue_name(name)
        has_reason = "0" if reason is None else "1"
        hidden = secrets.token_urlsafe(12)
        status, reply = self._change("nack", name, receipt, delay, has_reason, reason or "", hidden)
        self._raise_lease_error(name, status)
        raw_id, deliveries, dead = reply
        return {"id": _format_raw_id(raw_id), "deliveries": deliveries, "dead_lettered": bool(dead)}

    def extend(self, name, receipt, seconds):
        """Make a lease end seconds from now; returns the lease's id, receipt and new expiry."""
        check_queue_name(name)
        status, reply = self._change("extend", name, receipt, seconds)
        self._raise_lease_error(name, status)
        raw_id, expires_ms = reply
        return {
            "id": _format_raw_id(raw_id),
            "receipt": receipt,
            "lease_expires_at": message.iso_timestamp(expires_ms / 1000),
        }

    def browse(self, name, limit, offset, leased=False):
        """Available (or leased) messages from offset in pull order, changing nothing; (forms, total)."""
        check_queue_name(name)
        status, reply = self._run("browse", name, offset, limit, "leased" if leased else "")
        if status == "queue_not_found":
            raise QueueNotFound(name)
        total, items = reply[0], reply[1:]
        if not leased:
            forms = [
                message.browsed(stored, deliveries, _note(note))
                for stored, deliveries, note in zip(items[::3], items[1::3], items[2::3], strict=True)
            ]
            return forms, total
        forms = [
            message.browsed(stored, deliveries, _note(note), float(expires_ms) / 1000)
            for stored, deliveries, note, expires_ms in zip(
                items[::4], items[1::4], items[2::4], items[3::4], strict=True
            )
        ]
        return forms, total

    def purge(self, name):
        """Drop every message, leased ones included (their receipts end); returns how many."""
        check_queue_name(name)
        status, reply = self._change("purge", name)
        if status == "queue_not_found":
            raise QueueNotFound(name)
        return reply[0]

    def redrive(self, name, max_count=None, to=None, accepts=None):
        """Move dead letters back (see queues.redrive); each step is one script call."""
        return redrive.redrive(self, name, max_count, to, accepts)

    def dead_letter_page(self, name, offset, limit):
        """Available messages of name from offset, as (stored, note) pairs."""
        status, reply = self._run("browse", name, offset, limit, "")
        if status == "queue_not_found":
            raise QueueNotFound(name)
        items = reply[1:]
        return [(stored, _note(note)) for stored, note in zip(items[::3], items[2::3], strict=True)]

    def move_dead_letters(self, name, moves):
        """Move each (stored, destination) atomically; returns ({destination: moved}, kept, full)."""
        args = [part for stored, destination in moves for part in (stored, destination)]
        status, reply = self._change("redrive", name, *args)
        if status == "queue_not_found":
            raise QueueNotFound(name)
        kept, pairs = reply[0], reply[1:]
        moved = {d.decode(): n for d, n in zip(pairs[::2], pairs[1::2], strict=True)}
        return moved, kept, status == "full"

    @staticmethod
    def _raise_lease_error(name, status):
        if status == "queue_not_found":
            raise QueueNotFound(name)
        if status == "receipt_invalid":
            raise ReceiptInvalid.one()

    def expire_leases(self):
        """Return every expired lease's message to its queue (or dead-letter queue)."""
        if not self._closed:
            self._run("expire_all")


class RedisBackend:
    """The Redis backend as one part of the app: its queues and the lease sweeper. Redis persists
    the queues itself; nothing is read or written here at start-up."""

    snapshotter = None  # Redis snapshots by itself

    def __init__(self, config):
        # One connection per thread, plus the lease sweeper's and a spare for /health.
        self.queues = RedisQueueManager(
            config.storage.redis_url, config.server.threads + 2, config.queues.max_waiting_pulls
        )
        self._sweeper = LeaseSweeper(self.queues)

    def start(self):
        self._sweeper.start()

    def stop(self):
        """Refuse changes and let go of the connections."""
        self._sweeper.stop()
        self.queues.close()

    def health(self):
        """(failing, details) for GET /health: failing while Redis does not answer."""
        return self.queues.health()
