"""The one interface the routes, the lease sweeper and the server hooks use to reach the queues.

queues.memory.manager.MemoryQueueManager (memory) and queues.redis_manager.RedisQueueManager
(Redis) both provide it and raise the same errors from queues.errors; app.py builds one backend
(queues.memory.backend.MemoryBackend or queues.redis_manager.RedisBackend) from [storage] backend
and holds only that object, which starts, stops and reports the health of its parts.
"""

from __future__ import annotations

import re
from typing import NamedTuple, Protocol, runtime_checkable

from queues.errors import InvalidQueueName

UNLIMITED_WAITERS = 1 << 30
QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


# push()'s schema when the caller checked the bodies against no schema lookup of its own.
ANY_SCHEMA = object()


class Idempotency(NamedTuple):
    """A push's Idempotency-Key, the digest of its body (canonical JSON) and how long to keep it."""

    key: str
    digest: str
    seconds: int


def check_queue_name(name):
    """Raise InvalidQueueName unless name matches the contract's pattern."""
    if not isinstance(name, str) or QUEUE_NAME.fullmatch(name) is None:
        raise InvalidQueueName(f"queue name {name!r} must match ^[A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}$")


@runtime_checkable
class QueueBackend(Protocol):
    def count(self) -> int:
        """How many queues there are."""

    def require(self, name: str) -> None:
        """Raise InvalidQueueName or QueueNotFound unless the queue exists."""

    def schema_of(self, name: str) -> str | None:
        """The name of the queue's message schema, or None; the Redis backend may answer from a
        per-worker copy up to a second old, which push(schema=...) then verifies."""

    def info(self, name: str) -> dict:
        """The queue's QueueInfo."""

    def list(self) -> list[dict]:
        """QueueInfo of every queue, sorted by name."""

    def create(self, name, max_messages, schema=None, max_deliveries=None, dead_letter_queue=None) -> dict:
        """Create an empty queue; returns its QueueInfo."""

    def delete(self, name: str) -> int:
        """Delete a queue with its messages; returns how many went with it."""

    def push(self, name: str, bodies: list[bytes], idempotency: Idempotency | None = None, schema=ANY_SCHEMA):
        """Append JSON bodies, all or none; returns (ids, size after, replayed).

        schema is the schema name the bodies were checked against (from schema_of): if the queue's
        is another, nothing is pushed and SchemaChanged is raised, in the same atomic step.

        With idempotency, a key already pushed with the same digest adds nothing and returns the
        first push's ids and size with replayed True; with another digest it raises
        IdempotencyKeyReused. The check and the push are one atomic step.
        """

    def browse(self, name: str, limit: int, offset: int, leased=False) -> tuple[list[bytes], int]:
        """Available (or leased) messages from offset in pull order, changing nothing; (forms, total)."""

    def purge(self, name: str) -> int:
        """Drop every message, leased ones included; returns how many."""

    def redrive(self, name: str, max_count=None, to=None, accepts=None) -> dict:
        """Move dead letters back to their source queue (or to), oldest first, one atomic step each.

        accepts(schema_name, body) says whether a destination's schema takes a message (None: all
        do). Returns {"moved", "remaining", "by_queue"}.
        """

    def pull(self, name: str, count=1, wait=0.0, lease=None) -> list[bytes]:
        """Hand out up to count messages, waiting up to wait seconds; their pulled JSON forms."""

    def ack(self, name: str, receipts: list[str]) -> int:
        """End these leases for good, all or none; returns how many."""

    def nack(self, name: str, receipt: str, delay=0, reason=None) -> dict:
        """End a lease: back at the head (after delay seconds, still leased till then), or dead-lettered."""

    def extend(self, name: str, receipt: str, seconds: int) -> dict:
        """Make a lease end seconds from now."""

    def expire_leases(self) -> None:
        """Return every expired lease's message (the sweeper calls this)."""

    def release_waits(self) -> None:
        """End every long poll and let none start: the server is stopping."""

    def close(self) -> None:
        """Refuse every change from now on."""


@runtime_checkable
class Backend(Protocol):
    """One backend as a part of the app, the only thing create_app and shutdown hold of it."""

    queues: QueueBackend
    snapshotter: object  # the memory backend's Snapshotter (for /metrics), or None

    def start(self) -> None:
        """Start the backend's threads (lease sweeper; snapshots and journal checks in memory)."""

    def stop(self) -> None:
        """Refuse changes, stop the threads, write what must be written, let go of resources."""

    def health(self) -> tuple[bool, dict]:
        """(failing, details) for GET /health."""
