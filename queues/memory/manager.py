"""The in-memory queue backend: a thread-safe registry of queues (see queues.fifo for one queue).

Locking: the registry lock guards the dict of queues; each queue's lock guards that queue. Locks
are taken registry first, then queues in LOCK_ORDER, so a queue with a dead-letter queue comes
before every queue without one: moving dead letters holds a queue's lock, then its dead-letter
queue's, which never has a dead-letter queue of its own, so no cycle can form.

Every change is checked, then made as a record of queues.memory.changes: written to the journal
(when there is one) while the lock is held, then applied; so the journal's order is the order of
application, and a change that cannot be journaled is not applied. Start-up replays the journal
through the same records. The only I/O under a lock is that one write() into the OS's cache.
"""

import contextlib
import itertools
import secrets
import threading
import time

from queues import message, redrive
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
from queues.fifo import Queue
from queues.memory import changes
from storage import journal as journal_format

SNAPSHOT_VERSION = 1


def lock_order(queue):
    """Sort key for taking several queue locks at once (see the module docstring)."""
    return (queue.dead_letter_queue is None, queue.name)


def _id_floor():
    # Ids start at the current time in microseconds, so ids issued after a crash that lost the
    # latest snapshot still never repeat ones handed out before it.
    return time.time_ns() // 1000


class MemoryQueueManager:
    """All queues of the service. Thread-safe; raises the API's errors (QueueNotFound, QueueFull...)."""

    def __init__(self, next_id=None, clock=time.time, max_waiting=UNLIMITED_WAITERS, state=None):
        self._clock = clock  # wall-clock seconds; tests pass a fake one to step through leases
        self._waiting = threading.BoundedSemaphore(max_waiting)
        self._state = state or changes.State()
        self._queues = self._state.queues
        self._lock = threading.Lock()
        self._ids = itertools.count(max(next_id or 0, _id_floor()))
        self._journal = None
        self._generation = 0
        self._closed = None  # why changes are refused, once they are
        self._waits_released = False

    # --- durability -------------------------------------------------------------------------

    def start_journal(self, generation, journal=None):
        """Write every change to journal (None: journal off) from now on.

        generation is the journal generation the next snapshot starts, when there is no journal.
        """
        self._generation = generation
        self._journal = journal

    def _encode(self, change):
        """The journal's bytes for change, or None without a journal."""
        return journal_format.encode(change.plain()) if self._journal else None

    def _commit(self, change, encoded=None):
        """Journal change, then apply it; the caller holds the locks of what it changes.

        encoded is the change's bytes if the caller made them before taking its locks (a push).
        Returns (the record's sequence number for _make_durable, or None; what apply returned).
        """
        if self._closed:
            raise StorageUnavailable(f"{self._closed}; nothing was changed")
        sequence = None
        if self._journal is not None:
            try:
                sequence = self._journal.append(encoded or self._encode(change))
            except journal_format.JournalWriteError as exc:
                raise StorageUnavailable(f"{exc}; nothing was changed") from exc
        return sequence, change.apply(self._state)

    def _make_durable(self, *sequences):
        """Wait for the fsync the policy asks for; called after the locks are released."""
        written = [sequence for sequence in sequences if sequence is not None]
        if not written:
            return
        try:
            self._journal.wait_durable(max(written))
        except journal_format.JournalWriteError as exc:
            raise StorageUnavailable(f"{exc}; the change may not survive a crash") from exc

    def release_waits(self):
        """End every long poll now and let none start: used when the server begins to stop."""
        self._waits_released = True
        for queue in self._all_queues():
            with queue.lock:
                queue.not_empty.notify_all()

    def close(self, reason="the service is shutting down"):
        """Refuse every change from now on (saying reason), so a final snapshot misses nothing."""
        self._closed = reason
        self.release_waits()

    # --- lookup -----------------------------------------------------------------------------

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

    def info(self, name):
        """The queue's QueueInfo."""
        queue = self._get(name)
        with queue.lock:
            return queue.info()

    def list(self):
        """QueueInfo of every queue, sorted by name (code point order)."""
        infos = []
        for queue in self._all_queues():
            with queue.lock:
                if not queue.deleted:
                    infos.append(queue.info())
        return infos

    # --- queues -----------------------------------------------------------------------------

    def create(self, name, max_messages, schema=None, max_deliveries=None, dead_letter_queue=None):
        """Create an empty queue and return its info; raises QueueExists or InvalidRequest."""
        check_queue_name(name)
        create = changes.Create(name, max_messages, schema, self._clock(), max_deliveries, dead_letter_queue)
        with self._lock:
            if name in self._queues:
                raise QueueExists(name)
            if dead_letter_queue is not None:
                self._check_dead_letter_target(dead_letter_queue)
            sequence, queue = self._commit(create)
        self._make_durable(sequence)
        with queue.lock:
            return queue.info()

    def _check_dead_letter_target(self, name):
        """The caller holds the registry lock."""
        target = self._queues.get(name)
        if target is None:
            raise BadDeadLetterQueue.missing(name)
        if target.dead_letter_queue is not None:
            raise BadDeadLetterQueue.chained(name)

    def delete(self, name):
        """Delete a queue with its messages; return how many messages went with it."""
        check_queue_name(name)
        with self._lock:
            queue = self._queues.get(name)
            if queue is None:
                raise QueueNotFound(name)
            users = sorted(q.name for q in self._queues.values() if q.dead_letter_queue == name)
            if users:
                raise QueueInUse.as_dead_letter_queue(name, users)
            with queue.lock:
                sequence, deleted = self._commit(changes.Delete(name))
        self._make_durable(sequence)
        return deleted

    # --- messages ---------------------------------------------------------------------------

    def push(self, name, bodies, idempotency=None, schema=ANY_SCHEMA):
        """Append the JSON bodies in order, all or none; return (ids, size after, replayed).

        With idempotency (a queues.backend.Idempotency) the key is checked under the queue's lock
        and kept by the push's own record.
        """
        queue = self._get(name)
        now = self._clock()
        ids = [next(self._ids) for _ in bodies]
        shown = [message.format_id(i) for i in ids]
        push = changes.Push(name, list(map(message.pack, ids, itertools.repeat(now), bodies)))
        encoded = None if idempotency else self._encode(push)  # before the lock: pickling takes a while
        with queue.lock:
            if queue.deleted:
                raise QueueNotFound(name)
            if schema is not ANY_SCHEMA and schema != queue.schema:
                raise SchemaChanged(name)
            first = None if idempotency is None else self._first_push(queue, idempotency, now)
            if first is not None:
                # The first push may still wait for its fsync: its repeat answers no sooner.
                sequence = self._journal.written if self._journal is not None else None
                reply = (*first, True)
            else:
                if len(bodies) > queue.max_messages - queue.size():
                    raise QueueFull.no_room(name, queue.size(), queue.max_messages, len(bodies))
                if idempotency is not None:
                    size_after = queue.size() + len(bodies)
                    remembered = (
                        idempotency.key,
                        idempotency.digest,
                        shown,
                        size_after,
                        now + idempotency.seconds,
                    )
                    push = changes.Push(name, push.stored, remembered)
                sequence, _ = self._commit(push, encoded)
                reply = shown, queue.size(), False
        self._make_durable(sequence)
        return reply

    @staticmethod
    def _first_push(queue, idempotency, now):
        """(ids, size) of the push queue remembers under the key, or None; the caller holds queue.lock.
        Raises IdempotencyKeyReused if that push had another body."""
        first = queue.remembered(idempotency.key, now)
        if first is None:
            return None
        if first[0] != idempotency.digest:
            raise IdempotencyKeyReused(queue.name)
        return list(first[1]), first[2]

    def pull(self, name, count=1, wait=0.0, lease=None):
        """Hand out up to count messages from the head, waiting up to wait seconds for one.

        Without lease they are removed; with lease (seconds) they stay in flight until acked.
        Returns their pulled forms as JSON bytes.
        """
        queue = self._get(name)
        deadline = time.monotonic() + wait if wait > 0 else None
        receipts = [secrets.token_urlsafe(12) for _ in range(count)] if lease is not None else None
        with queue.lock:
            expired = self._expire(queue, self._clock())
            self._wait_for_messages(queue, deadline)
            if queue.deleted:
                raise QueueNotFound(name)
            available = min(count, len(queue.messages))
            if not available:
                sequence, handed_out = None, []
            elif lease is None:
                sequence, handed_out = self._commit(changes.Take(name, available))
            else:
                leasing = changes.Lease(name, receipts[:available], self._clock() + lease)
                sequence, leases = self._commit(leasing)
                notes = queue.notes
                handed_out = [(leased, notes.get(message.message_id(leased.stored))) for leased in leases]
            if queue.messages:
                # A push notifies one waiter per message; pass on what this one did not take.
                queue.not_empty.notify()
        self._make_durable(expired, sequence)
        if lease is None:
            return [message.render(stored, message.note_members(note)) for stored, note in handed_out]
        return [leased.render(note) for leased, note in handed_out]

    def _wait_for_messages(self, queue, deadline):
        """Wait until queue has a message or the deadline passes; the caller holds queue.lock.

        At most max_waiting pulls wait at once; past that a pull answers at once, so idle workers
        cannot hold every server thread and starve the pushes that would wake them.
        """
        if queue.messages or deadline is None or not self._waiting.acquire(blocking=False):
            return
        queue.waiting += 1
        try:
            while not (queue.messages or queue.deleted or self._waits_released):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                queue.not_empty.wait(remaining)
        finally:
            queue.waiting -= 1
            self._waiting.release()

    def ack(self, name, receipts):
        """End these leases for good, all or none; returns how many. Raises ReceiptInvalid."""
        queue = self._get(name)
        with queue.lock:
            expired = self._expire(queue, self._clock())
            unknown = [i for i, receipt in enumerate(receipts) if receipt not in queue.leases]
            if unknown or len(set(receipts)) != len(receipts):
                raise ReceiptInvalid.in_batch(unknown)
            sequence, _ = self._commit(changes.Ack(name, receipts))
        self._make_durable(expired, sequence)
        return len(receipts)

    def nack(self, name, receipt, delay=0, reason=None):
        """End a lease: the message goes back to the head, or to the dead-letter queue.

        With delay (seconds) it stays leased under a receipt no worker holds until then, unless
        this was its last allowed delivery; reason stays with the message.
        """
        queue = self._get(name)
        hidden = secrets.token_urlsafe(12)
        with queue.lock:
            now = self._clock()
            expired = self._expire(queue, now)
            if receipt not in queue.leases:
                raise ReceiptInvalid.one()
            lease = queue.leases[receipt]
            dead = queue.max_deliveries is not None and lease.deliveries >= queue.max_deliveries
            hidden = hidden if delay > 0 and not dead else None
            sequence = self._with_dead_letter_lock(
                queue, changes.Nack(name, receipt, hidden, now + delay, reason, now)
            )
        self._make_durable(expired, sequence)
        return {
            "id": message.format_id(message.message_id(lease.stored)),
            "deliveries": lease.deliveries,
            "dead_lettered": dead,
        }

    def extend(self, name, receipt, seconds):
        """Make a lease end seconds from now; returns the lease's id, receipt and new expiry."""
        queue = self._get(name)
        with queue.lock:
            now = self._clock()
            expired = self._expire(queue, now)
            if receipt not in queue.leases:
                raise ReceiptInvalid.one()
            sequence, lease = self._commit(changes.Extend(name, receipt, now + seconds))
        self._make_durable(expired, sequence)
        return {
            "id": message.format_id(message.message_id(lease.stored)),
            "receipt": receipt,
            "lease_expires_at": message.iso_timestamp(lease.expires_at),
        }

    # --- operators ---------------------------------------------------------------------------

    def browse(self, name, limit, offset, leased=False):
        """Available (or leased) messages from offset in pull order, changing nothing; (forms, total)."""
        queue = self._get(name)
        with queue.lock:
            if leased:
                leases = sorted(queue.leases.values(), key=lambda lease: message.message_id(lease.stored))
                total, page = len(leases), leases[offset : offset + limit]
                shown = [(lease.stored, lease.deliveries, lease.expires_at) for lease in page]
            else:
                total = len(queue.messages)
                page = itertools.islice(queue.messages, offset, offset + limit)
                counts = queue.deliveries
                shown = [(stored, counts.get(message.message_id(stored), 0), None) for stored in page]
            notes = [queue.notes.get(message.message_id(stored)) for stored, _, _ in shown]
        return [
            message.browsed(stored, deliveries, note, expires_at)
            for (stored, deliveries, expires_at), note in zip(shown, notes, strict=True)
        ], total

    def purge(self, name):
        """Drop every message, leased ones included (their receipts end); returns how many."""
        queue = self._get(name)
        with queue.lock:
            if queue.deleted:
                raise QueueNotFound(name)
            sequence, purged = self._commit(changes.Purge(name))
        self._make_durable(sequence)
        return purged

    def redrive(self, name, max_count=None, to=None, accepts=None):
        """Move dead letters back (see queues.redrive); each page moves under the queues' locks."""
        return redrive.redrive(self, name, max_count, to, accepts)

    def dead_letter_page(self, name, offset, limit):
        """Available messages of name from offset, as (stored, note) pairs."""
        queue = self._get(name)
        with queue.lock:
            page = list(itertools.islice(queue.messages, offset, offset + limit))
            return [(stored, queue.notes.get(message.message_id(stored))) for stored in page]

    def move_dead_letters(self, name, moves):
        """Move each (stored, destination) atomically; returns ({destination: moved}, kept, full)."""
        queue = self._get(name)
        with self._lock:
            targets = {d: self._queues.get(d) for _, d in moves}
        involved = {id(q): q for q in (queue, *targets.values()) if q is not None}
        with contextlib.ExitStack() as held:
            for locked in sorted(involved.values(), key=lock_order):
                held.enter_context(locked.lock)
            if queue.deleted:
                raise QueueNotFound(name)
            chosen, kept, full = _choose_moves(queue, moves, targets)
            sequence, moved = self._commit(changes.Redrive(name, chosen)) if chosen else (None, {})
        self._make_durable(sequence)
        return moved, kept, full

    def expire_leases(self):
        """Return every expired lease's message to its queue (or dead-letter queue)."""
        now = self._clock()
        for queue in self._all_queues():
            with queue.lock:
                expired = None if queue.deleted or self._closed else self._expire(queue, now)
            self._make_durable(expired)

    def _expire(self, queue, now):
        """End the leases of queue that are due; the caller holds queue.lock.

        Returns the journal sequence to make durable once the lock is released, or None.
        """
        due = queue.due(now) if queue.leases else None
        if not due:
            return None
        try:
            return self._with_dead_letter_lock(queue, changes.Return(queue.name, due, now))
        except StorageUnavailable:
            queue.schedule(due)  # still leased: the next sweep or pull tries again
            raise

    def _with_dead_letter_lock(self, queue, change):
        """Commit change (a Return or a Nack); the caller holds queue.lock, this takes its
        dead-letter queue's. Returns the journal sequence."""
        target = queue.dead_letter_target
        with target.lock if target is not None else contextlib.nullcontext():
            return self._commit(change)[0]

    # --- snapshot, restore, replay ----------------------------------------------------------

    def snapshot(self, unless_token=None):
        """Copy the whole state as plain types; returns (state, token), or None if the state's token
        is still unless_token (nothing changed since that snapshot).

        Every lock is held for the copy, so the state is one instant's, and with a journal the next
        generation starts at that instant: state["journal_generation"] is the first generation that
        the state does not hold. Its file is opened before the locks are taken, and the previous
        one synced after they are released. Raises storage.journal.JournalWriteError.
        """
        if self._journal is not None and self._journal.lost:
            unless_token = None  # only a new generation lets changes in again, changed state or not
        if self._journal is not None and unless_token is not None:
            # An idle service opens no file. Read without the queue locks, the token may miss a change
            # under way: that change is in the journal already, and the next snapshot takes it.
            with self._lock:
                queues = sorted(self._queues.values(), key=lock_order)
            if self._token(queues) == unless_token:
                return None
        opened = self._journal.open_next() if self._journal is not None else None
        try:
            with self._lock, contextlib.ExitStack() as held:
                queues = sorted(self._queues.values(), key=lock_order)
                for queue in queues:
                    held.enter_context(queue.lock)
                token = self._token(queues)
                if token == unless_token:
                    return None
                saved = [queue.settings() for queue in sorted(queues, key=lambda q: q.name)]
                if opened is None:
                    generation = self._generation
                else:
                    generation, opened = self._journal.switch(opened), None
        finally:
            if opened is not None:
                self._journal.discard(opened)
        if self._journal is not None:
            self._journal.retire()
        # Drawn after the copy, so every copied id is below it.
        state = {
            "version": SNAPSHOT_VERSION,
            "next_id": next(self._ids),
            "journal_generation": generation,
            "queues": saved,
        }
        return state, token

    def _token(self, queues):
        """What tells a changed state from the one a snapshot saved; queues in lock_order."""
        return (self._state.registry_changes, *(queue.changes for queue in queues))

    @classmethod
    def restore(cls, state=None, replayed=(), clock=time.time, max_waiting=UNLIMITED_WAITERS):
        """A manager holding a snapshot's state (None: empty) and the changes journaled after it
        (queues.memory.changes records), leases included: end_leases_after_restart ends them once
        the journal is started. Raises ValueError if a change does not apply.
        """
        restored = changes.State()
        for saved in state["queues"] if state else ():
            restored.queues[saved["name"]] = Queue.from_settings(saved)
        for queue in restored.queues.values():
            if queue.dead_letter_queue is not None:
                queue.dead_letter_target = restored.queues[queue.dead_letter_queue]
        # Ids go on above every replayed push's, whatever the clock says now.
        pushes = [change.stored for change in replayed if type(change) is changes.Push and change.stored]
        next_id = max([state["next_id"] if state else 0, *(message.message_id(s[-1]) + 1 for s in pushes)])
        manager = cls(next_id=next_id, clock=clock, max_waiting=max_waiting, state=restored)
        for number, change in enumerate(replayed, 1):
            try:
                with manager._locks_of(change.name, change.other_queues()):
                    change.apply(restored)
            except Exception as exc:  # whatever the failure, the journal does not fit the state
                raise ValueError(
                    f"change {number} of {len(replayed)} ({change.kind} to {change.name!r}) does not apply "
                    f"to the state before it ({type(exc).__name__}: {exc})"
                ) from exc
        return manager

    @contextlib.contextmanager
    def _locks_of(self, name, others=()):
        """The registry lock and every lock a change of queue name (and of others) may need, in
        LOCK_ORDER."""
        with self._lock, contextlib.ExitStack() as held:
            queue = self._queues.get(name)
            needed = {queue, queue and queue.dead_letter_target, *map(self._queues.get, others)} - {None}
            for locked in sorted(needed, key=lock_order):
                held.enter_context(locked.lock)
            yield

    def end_leases_after_restart(self):
        """End every lease, as a restart ends them: in-flight messages are available again, at the
        head, with their delivery counts kept.

        Journaled, so that leases taken from now on replay against the state they were taken from
        if the service stops again before its next snapshot.
        """
        sequences = []
        for queue in self._all_queues():
            with queue.lock:
                if queue.leases:
                    sequences.append(self._commit(changes.Restart(queue.name))[0])
        self._make_durable(*sequences)


def _choose_moves(queue, moves, targets):
    """The (id, destination) moves of a redrive page that can happen now, how many stay because
    their destination is gone, and whether a full destination stops the redrive; the caller holds
    every lock involved."""
    present = queue.available_among({message.message_id(stored) for stored, _ in moves})
    chosen, kept, adding = [], 0, {}
    for stored, destination in moves:
        target = targets[destination]
        number = message.message_id(stored)
        if target is None or target.deleted:
            kept += 1
        elif target.size() + adding.get(destination, 0) + 1 > target.max_messages:
            return chosen, kept, True
        elif number in present:
            chosen.append((number, destination))
            adding[destination] = adding.get(destination, 0) + 1
    return chosen, kept, False
