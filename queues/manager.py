"""The in-memory queue backend: a thread-safe registry of queues (see queues.fifo for one queue).

Locking: the registry lock guards the dict of queues; each queue's lock guards that queue. Locks
are taken registry first, then a queue, then (only to move dead letters) that queue's dead-letter
queue, which never has a dead-letter queue of its own, so no cycle can form. No I/O happens while
any of them is held.
"""

import itertools
import re
import threading
import time

from queues import message
from queues.errors import (
    InvalidQueueName,
    InvalidRequest,
    QueueExists,
    QueueFull,
    QueueInUse,
    QueueNotFound,
    ReceiptInvalid,
    StorageUnavailable,
)
from queues.fifo import Queue

QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SNAPSHOT_VERSION = 1


def check_queue_name(name):
    """Raise InvalidQueueName unless name matches the contract's pattern."""
    if not isinstance(name, str) or QUEUE_NAME.fullmatch(name) is None:
        raise InvalidQueueName(f"queue name {name!r} must match ^[A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}$")


def _id_floor():
    # Ids start at the current time in microseconds, so ids issued after a crash that lost the
    # latest snapshot still never repeat ones handed out before it.
    return time.time_ns() // 1000


class QueueManager:
    """All queues of the service. Thread-safe; raises the API's errors (QueueNotFound, QueueFull...)."""

    def __init__(self, next_id=None, clock=time.time):
        self._clock = clock  # wall-clock seconds; tests pass a fake one to step through leases
        self._queues = {}
        self._lock = threading.Lock()
        self._registry_changes = 0
        self._ids = itertools.count(max(next_id or 0, _id_floor()))
        self._closed = False
        self._waits_released = False

    def _all_queues(self):
        with self._lock:
            return [queue for _, queue in sorted(self._queues.items())]

    def _get(self, name):
        check_queue_name(name)
        with self._lock:
            queue = self._queues.get(name)
        if queue is None:
            raise QueueNotFound(name)
        return queue

    def _check_open(self):
        """Raise StorageUnavailable after close(); callers hold the lock of what they change."""
        if self._closed:
            raise StorageUnavailable("the service is shutting down; nothing was changed")

    def _check_live(self, queue):
        """Raise unless queue may change now; the caller holds queue.lock."""
        self._check_open()
        if queue.deleted:
            raise QueueNotFound(queue.name)

    def release_waits(self):
        """End every long poll now and let none start: used when the server begins to stop."""
        self._waits_released = True
        for queue in self._all_queues():
            with queue.lock:
                queue.not_empty.notify_all()

    def close(self):
        """Refuse every change from now on, so a final snapshot misses nothing."""
        self._closed = True
        self.release_waits()

    def count(self):
        """How many queues there are."""
        with self._lock:
            return len(self._queues)

    def require(self, name):
        """Raise InvalidQueueName or QueueNotFound unless the queue exists."""
        self._get(name)

    def schema_of(self, name):
        """The name of the queue's message schema, or None."""
        return self._get(name).schema

    def create(self, name, max_messages, schema=None, max_deliveries=None, dead_letter_queue=None):
        """Create an empty queue and return its info; raises QueueExists or InvalidRequest."""
        check_queue_name(name)
        queue = Queue(name, max_messages, schema, self._clock(), max_deliveries, dead_letter_queue)
        with self._lock:
            self._check_open()
            if name in self._queues:
                raise QueueExists(name)
            if dead_letter_queue is not None:
                queue.dead_letter_target = self._dead_letter_target(dead_letter_queue)
            self._queues[name] = queue
            self._registry_changes += 1
        with queue.lock:
            return queue.info()

    def _dead_letter_target(self, name):
        """The queue named as a dead-letter queue, if it may be one; the caller holds the registry lock."""
        target = self._queues.get(name)
        if target is None:
            raise InvalidRequest(f"dead_letter_queue '{name}' does not exist; create it first")
        if target.dead_letter_queue is not None:
            raise InvalidRequest(
                f"dead_letter_queue '{name}' has a dead-letter queue of its own; chains are not allowed"
            )
        return target

    def delete(self, name):
        """Delete a queue with its messages; return how many messages went with it."""
        check_queue_name(name)
        with self._lock:
            self._check_open()
            queue = self._queues.get(name)
            if queue is None:
                raise QueueNotFound(name)
            users = sorted(q.name for q in self._queues.values() if q.dead_letter_queue == name)
            if users:
                raise QueueInUse(f"queue '{name}' is the dead-letter queue of {', '.join(users)}")
            del self._queues[name]
            self._registry_changes += 1
            with queue.lock:
                queue.deleted = True
                deleted = queue.clear()
                queue.not_empty.notify_all()
        return deleted

    def info(self, name):
        """The queue's QueueInfo."""
        queue = self._get(name)
        with queue.lock:
            self._expire(queue, self._clock())
            return queue.info()

    def list(self):
        """QueueInfo of every queue, sorted by name (code point order)."""
        infos = []
        now = self._clock()
        for queue in self._all_queues():
            with queue.lock:
                if not queue.deleted:
                    self._expire(queue, now)
                    infos.append(queue.info())
        return infos

    def push(self, name, bodies):
        """Append the JSON bodies in order, all or none; return (ids, size after)."""
        queue = self._get(name)
        ids = [next(self._ids) for _ in bodies]
        stored = list(map(message.pack, ids, itertools.repeat(self._clock()), bodies))
        with queue.lock:
            self._check_live(queue)
            if len(bodies) > queue.max_messages - queue.size():
                raise QueueFull(
                    f"queue '{name}' holds {queue.size()} of {queue.max_messages} messages; "
                    f"{len(bodies)} more do not fit"
                )
            queue.append(stored)
            size = queue.size()
        return [message.format_id(i) for i in ids], size

    def pull(self, name, count=1, wait=0.0, lease=None):
        """Hand out up to count messages from the head, waiting up to wait seconds for one.

        Without lease they are removed; with lease (seconds) they stay in flight until acked.
        Returns their pulled forms as JSON bytes.
        """
        queue = self._get(name)
        deadline = time.monotonic() + wait
        with queue.lock:
            self._expire(queue, self._clock())
            while not (queue.messages or queue.deleted or self._waits_released):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                queue.not_empty.wait(remaining)
            self._check_live(queue)
            if lease is None:
                handed_out = queue.take(count)
            else:
                handed_out = queue.lease(count, self._clock() + lease)
            if handed_out and queue.messages:
                # A push notifies one waiter per message; pass on what this one did not take.
                queue.not_empty.notify()
        if lease is None:
            return [message.render(stored) for stored in handed_out]
        return [leased.render() for leased in handed_out]

    def ack(self, name, receipts):
        """End these leases for good, all or none; returns how many. Raises ReceiptInvalid."""
        queue = self._get(name)
        with queue.lock:
            self._check_live(queue)
            self._expire(queue, self._clock())
            unknown = [i for i, receipt in enumerate(receipts) if receipt not in queue.leases]
            if unknown or len(set(receipts)) != len(receipts):
                raise ReceiptInvalid(
                    "unknown, expired or repeated receipt(s); nothing was acknowledged",
                    [{"index": i, "path": "receipts", "problem": "unknown or expired"} for i in unknown],
                )
            for receipt in receipts:
                queue.end_lease(receipt)
            queue.acked_total += len(receipts)
        return len(receipts)

    def nack(self, name, receipt):
        """End a lease now: the message goes back to the head, or to the dead-letter queue."""
        queue = self._get(name)
        with queue.lock:
            self._check_live(queue)
            self._expire(queue, self._clock())
            lease = queue.end_lease(receipt)
            if lease is None:
                raise ReceiptInvalid("unknown or expired receipt")
            dead = self._return(queue, [lease])
        return {
            "id": message.format_id(message.message_id(lease.stored)),
            "deliveries": lease.deliveries,
            "dead_lettered": bool(dead),
        }

    def extend(self, name, receipt, seconds):
        """Make a lease end seconds from now; returns the lease's id, receipt and new expiry."""
        queue = self._get(name)
        with queue.lock:
            self._check_live(queue)
            now = self._clock()
            self._expire(queue, now)
            lease = queue.extend(receipt, now + seconds)
            if lease is None:
                raise ReceiptInvalid("unknown or expired receipt")
        return {
            "id": message.format_id(message.message_id(lease.stored)),
            "receipt": receipt,
            "lease_expires_at": message.iso_timestamp(lease.expires_at),
        }

    def expire_leases(self):
        """Return every expired lease's message to its queue (or dead-letter queue)."""
        now = self._clock()
        for queue in self._all_queues():
            with queue.lock:
                if not (queue.deleted or self._closed):
                    self._expire(queue, now)

    def _expire(self, queue, now):
        """The caller holds queue.lock."""
        if queue.leases:
            self._return(queue, queue.expired(now))

    def _return(self, queue, leases):
        """Put ended leases back at the head, or dead-letter those out of deliveries; the caller
        holds queue.lock. Returns the dead-lettered ones."""
        limit = queue.max_deliveries
        dead = [lease for lease in leases if limit is not None and lease.deliveries >= limit]
        queue.put_back([lease for lease in leases if not (limit is not None and lease.deliveries >= limit)])
        if dead:
            # The target cannot be deleted while this queue names it, so its reference stays valid.
            with queue.dead_letter_target.lock:
                queue.dead_letter_target.add_dead_letters(dead)
            queue.dead_lettered_total += len(dead)
        return dead

    def snapshot(self):
        """Copy the whole state as plain types, each queue under its lock; returns (state, token).

        token changes whenever the state does, so an unchanged state need not be written again.
        """
        with self._lock:
            queues = [queue for _, queue in sorted(self._queues.items())]
            token = [self._registry_changes]
        saved = []
        for queue in queues:
            with queue.lock:
                saved.append(queue.settings())
                token.append(queue.changes)
        # Drawn after the copy, so every copied id is below it.
        state = {"version": SNAPSHOT_VERSION, "next_id": next(self._ids), "queues": saved}
        return state, tuple(token)

    @classmethod
    def restore(cls, state, clock=time.time):
        """A manager holding the state that snapshot() returned; in-flight messages are available."""
        manager = cls(next_id=state["next_id"], clock=clock)
        for saved in state["queues"]:
            manager._queues[saved["name"]] = Queue.from_settings(saved)
        for queue in manager._queues.values():
            if queue.dead_letter_queue is not None:
                queue.dead_letter_target = manager._queues[queue.dead_letter_queue]
        return manager
