"""The in-memory queues: a thread-safe registry of FIFO queues of stored messages.

Locking: the registry lock guards the dict of queues; each queue's lock guards its messages and
counters. The registry lock is always taken before a queue lock, never the other way round, and no
I/O happens while either is held.
"""

import itertools
import re
import threading
import time
from collections import deque

from queues import message
from queues.errors import (
    InvalidQueueName,
    QueueExists,
    QueueFull,
    QueueNotFound,
    StorageUnavailable,
)

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


class Queue:
    """One FIFO queue; every attribute but name is guarded by lock."""

    def __init__(self, name, max_messages, schema, created_at, pushed_total=0, pulled_total=0):
        self.name = name
        self.max_messages = max_messages
        self.schema = schema
        self.created_at = created_at
        self.pushed_total = pushed_total
        self.pulled_total = pulled_total
        self.messages = deque()
        self.deleted = False
        self.changes = 0
        self.lock = threading.Lock()
        self.not_empty = threading.Condition(self.lock)

    def info(self):
        """QueueInfo as the API shows it; the caller holds lock."""
        return {
            "name": self.name,
            "size": len(self.messages),
            "max_messages": self.max_messages,
            "schema": self.schema,
            "created_at": message.iso_timestamp(self.created_at),
            "pushed_total": self.pushed_total,
            "pulled_total": self.pulled_total,
        }

    def settings(self):
        """Everything but the messages, as plain types; the caller holds lock."""
        return {
            "name": self.name,
            "max_messages": self.max_messages,
            "schema": self.schema,
            "created_at": self.created_at,
            "pushed_total": self.pushed_total,
            "pulled_total": self.pulled_total,
        }

    def take(self, count):
        """Remove and return up to count messages from the head; the caller holds lock."""
        taken = [self.messages.popleft() for _ in range(min(count, len(self.messages)))]
        if taken:
            self.pulled_total += len(taken)
            self.changes += 1
        return taken


class QueueManager:
    """All queues of the service. Thread-safe; raises the API's errors (QueueNotFound, QueueFull...)."""

    def __init__(self, next_id=None):
        self._queues = {}
        self._lock = threading.Lock()
        self._registry_changes = 0
        self._ids = itertools.count(max(next_id or 0, _id_floor()))
        self._closed = False
        self._waits_released = False

    def _all_queues(self):
        with self._lock:
            return sorted(self._queues.items())

    def _check_open(self):
        """Raise StorageUnavailable after close(); callers hold the lock of what they change."""
        if self._closed:
            raise StorageUnavailable("the service is shutting down; nothing was changed")

    def release_waits(self):
        """End every long poll now and let none start: used when the server begins to stop."""
        self._waits_released = True
        for _, queue in self._all_queues():
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

    def _get(self, name):
        check_queue_name(name)
        with self._lock:
            queue = self._queues.get(name)
        if queue is None:
            raise QueueNotFound(name)
        return queue

    def require(self, name):
        """Raise InvalidQueueName or QueueNotFound unless the queue exists."""
        self._get(name)

    def schema_of(self, name):
        """The name of the queue's message schema, or None."""
        return self._get(name).schema

    def create(self, name, max_messages, schema=None):
        """Create an empty queue and return its info; raises QueueExists."""
        check_queue_name(name)
        queue = Queue(name, max_messages, schema, created_at=time.time())
        with self._lock:
            self._check_open()
            if name in self._queues:
                raise QueueExists(name)
            self._queues[name] = queue
            self._registry_changes += 1
        with queue.lock:
            return queue.info()

    def delete(self, name):
        """Delete a queue with its messages; return how many messages went with it."""
        check_queue_name(name)
        with self._lock:
            self._check_open()
            queue = self._queues.pop(name, None)
            if queue is None:
                raise QueueNotFound(name)
            self._registry_changes += 1
            with queue.lock:
                queue.deleted = True
                deleted = len(queue.messages)
                queue.messages.clear()
                queue.not_empty.notify_all()
        return deleted

    def info(self, name):
        """The queue's QueueInfo."""
        queue = self._get(name)
        with queue.lock:
            return queue.info()

    def list(self):
        """QueueInfo of every queue, sorted by name (code point order)."""
        infos = []
        for _, queue in self._all_queues():
            with queue.lock:
                if not queue.deleted:
                    infos.append(queue.info())
        return infos

    def push(self, name, bodies):
        """Append the JSON bodies in order, all or none; return (ids, size after)."""
        queue = self._get(name)
        ids = [next(self._ids) for _ in bodies]
        stored = list(map(message.pack, ids, itertools.repeat(time.time()), bodies))
        with queue.lock:
            self._check_open()
            if queue.deleted:
                raise QueueNotFound(name)
            room = queue.max_messages - len(queue.messages)
            if len(bodies) > room:
                raise QueueFull(
                    f"queue '{name}' holds {len(queue.messages)} of {queue.max_messages} messages; "
                    f"{len(bodies)} more do not fit"
                )
            queue.messages.extend(stored)
            queue.pushed_total += len(bodies)
            queue.changes += 1
            size = len(queue.messages)
            queue.not_empty.notify(len(bodies))
        return [message.format_id(i) for i in ids], size

    def pull(self, name, count=1, wait=0.0):
        """Remove up to count stored messages from the head, waiting up to wait seconds for one."""
        queue = self._get(name)
        deadline = time.monotonic() + wait
        with queue.lock:
            while not (queue.messages or queue.deleted or self._waits_released):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                queue.not_empty.wait(remaining)
            self._check_open()
            if queue.deleted:
                raise QueueNotFound(name)
            taken = queue.take(count)
            if taken and queue.messages:
                # notify() woke one waiter per pushed message; pass on any it did not consume.
                queue.not_empty.notify()
        return taken

    def snapshot(self):
        """Copy the whole state as plain types, each queue under its lock; returns (state, token).

        token changes whenever the state does, so an unchanged state need not be written again.
        """
        with self._lock:
            queues = sorted(self._queues.items())
            token = [self._registry_changes]
        state_queues = []
        for _, queue in queues:
            with queue.lock:
                settings = queue.settings()
                settings["messages"] = list(queue.messages)
                token.append(queue.changes)
            state_queues.append(settings)
        # Drawn after the copy, so every copied id is below it.
        next_id = next(self._ids)
        state = {"version": SNAPSHOT_VERSION, "next_id": next_id, "queues": state_queues}
        return state, tuple(token)

    @classmethod
    def restore(cls, state):
        """A manager holding the state that snapshot() returned."""
        manager = cls(next_id=state["next_id"])
        for saved in state["queues"]:
            queue = Queue(
                saved["name"],
                saved["max_messages"],
                saved["schema"],
                saved["created_at"],
                saved["pushed_total"],
                saved["pulled_total"],
            )
            queue.messages.extend(saved["messages"])
            manager._queues[queue.name] = queue
        return manager
