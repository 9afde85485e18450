"""The in-memory queue backend: a thread-safe registry of queues (see queues.fifo for one queue).

Locking: the registry lock guards the dict of queues; each queue's lock guards that queue. Locks
are taken registry first, then queues in LOCK_ORDER, so a queue with a dead-letter queue comes
before every queue without one: moving dead letters holds a queue's lock, then its dead-letter
queue's, which never has a dead-letter queue of its own, so no cycle can form.

Every change is checked, then written to the journal (when there is one) while the lock is held,
then applied; so the journal's order is the order of application, and a change that cannot be
journaled is not applied. The only I/O under a lock is that one write() into the OS's cache.
"""

import contextlib
import itertools
import re
import secrets
import threading
import time

from queues import message, redrive
from queues.errors import (
    BadDeadLetterQueue,
    IdempotencyKeyReused,
    InvalidQueueName,
    QueueExists,
    QueueFull,
    QueueInUse,
    QueueNotFound,
    ReceiptInvalid,
    StorageUnavailable,
)
from queues.fifo import Queue
from storage import journal as journal_format

UNLIMITED_WAITERS = 1 << 30
EXPIRED_REASON = "lease_expired"  # dead_letter.reason of a message whose last lease expired
QUEUE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SNAPSHOT_VERSION = 1


def check_queue_name(name):
    """Raise InvalidQueueName unless name matches the contract's pattern."""
    if not isinstance(name, str) or QUEUE_NAME.fullmatch(name) is None:
        raise InvalidQueueName(f"queue name {name!r} must match ^[A-Za-z0-9][A-Za-z0-9_.-]{{0,63}}$")


def lock_order(queue):
    """Sort key for taking several queue locks at once (see the module docstring)."""
    return (queue.dead_letter_queue is None, queue.name)


def _id_floor():
    # Ids start at the current time in microseconds, so ids issued after a crash that lost the
    # latest snapshot still never repeat ones handed out before it.
    return time.time_ns() // 1000


class QueueManager:
    """All queues of the service. Thread-safe; raises the API's errors (QueueNotFound, QueueFull...)."""

    def __init__(self, next_id=None, clock=time.time, max_waiting=UNLIMITED_WAITERS):
        self._clock = clock  # wall-clock seconds; tests pass a fake one to step through leases
        self._waiting = threading.BoundedSemaphore(max_waiting)
        self._queues = {}
        self._lock = threading.Lock()
        self._registry_changes = 0
        self._ids = itertools.count(max(next_id or 0, _id_floor()))
        self._journal = None
        self._generation = 0
        self._closed = False
        self._waits_released = False

    # --- durability -------------------------------------------------------------------------

    def start_journal(self, generation, journal=None):
        """Write every change to journal (None: journal off) from now on.

        generation is the journal generation the next snapshot starts, when there is no journal.
        """
        self._generation = generation
        self._journal = journal

    def _write_ahead(self, *record):
        """Journal a change before applying it; the caller holds the locks of what it changes.

        Returns the record's sequence number (or None without a journal) for _make_durable.
        """
        return self._append(journal_format.encode(record) if self._journal else None)

    def _append(self, encoded):
        """_write_ahead for a record already encoded (a push's, before its lock was taken)."""
        if self._closed:
            raise StorageUnavailable("the service is shutting down; nothing was changed")
        if encoded is None:
            return None
        try:
            return self._journal.append(encoded)
        except journal_format.JournalWriteError as exc:
            raise StorageUnavailable(f"{exc}; nothing was changed") from exc

    def _make_durable(self, *sequences):
        """Wait for the fsync the policy asks for; called after the locks are released."""
        written = [sequence for sequence in sequences if sequence is not None]
        if not written:
            return
        try:
            self._journal.sync(max(written))
        except journal_format.JournalWriteError as exc:
            raise StorageUnavailable(f"{exc}; the change may not survive a crash") from exc

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
        settings = (name, max_messages, schema, self._clock(), max_deliveries, dead_letter_queue)
        with self._lock:
            if name in self._queues:
                raise QueueExists(name)
            if dead_letter_queue is not None:
                self._check_dead_letter_target(dead_letter_queue)
            sequence = self._write_ahead("create", *settings)
            queue = self._apply_create(*settings)
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

    def _apply_create(self, name, max_messages, schema, created_at, max_deliveries, dead_letter_queue):
        queue = Queue(name, max_messages, schema, created_at, max_deliveries, dead_letter_queue)
        if dead_letter_queue is not None:
            # It cannot be deleted while this queue names it, so the reference stays valid.
            queue.dead_letter_target = self._queues[dead_letter_queue]
        self._queues[name] = queue
        self._registry_changes += 1
        return queue

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
                sequence = self._write_ahead("delete", name)
                deleted = self._apply_delete(queue)
        self._make_durable(sequence)
        return deleted

    def _apply_delete(self, queue):
        """The caller holds the registry lock and queue.lock."""
        del self._queues[queue.name]
        self._registry_changes += 1
        queue.deleted = True
        queue.not_empty.notify_all()
        return queue.clear()

    # --- messages ---------------------------------------------------------------------------

    def push(self, name, bodies, idempotency=None):
        """Append the JSON bodies in order, all or none; return (ids, size after, replayed).

        With idempotency (a queues.backend.Idempotency) the key is checked and kept under the
        queue's lock, in the push's own journal record.
        """
        queue = self._get(name)
        now = self._clock()
        ids = [next(self._ids) for _ in bodies]
        stored = list(map(message.pack, ids, itertools.repeat(now), bodies))
        record = journal_format.encode(("push", name, stored)) if self._journal and not idempotency else None
        with queue.lock:
            if queue.deleted:
                raise QueueNotFound(name)
            if idempotency is not None:
                first = queue.remembered(idempotency.key, now)
                if first is not None:
                    if first[0] != idempotency.digest:
                        raise IdempotencyKeyReused(name)
                    return list(first[1]), first[2], True
            if len(bodies) > queue.max_messages - queue.size():
                raise QueueFull.no_room(name, queue.size(), queue.max_messages, len(bodies))
            shown = [message.format_id(i) for i in ids]
            if idempotency is None:
                sequence = self._append(record)
            else:
                kept = (idempotency.key, idempotency.digest, shown, queue.size() + len(bodies))
                remembered = (*kept, now + idempotency.seconds)
                sequence = self._write_ahead("push", name, stored, remembered)
                queue.remember(*remembered)
            queue.append(stored)
            size = queue.size()
        self._make_durable(sequence)
        return shown, size, False

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
                sequence = self._write_ahead("take", name, available)
                handed_out = queue.take(available)
            else:
                expires_at = self._clock() + lease
                sequence = self._write_ahead("lease", name, receipts[:available], expires_at)
                leases = queue.lease(receipts[:available], expires_at)
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
            sequence = self._write_ahead("ack", name, receipts)
            self._apply_ack(queue, receipts)
        self._make_durable(expired, sequence)
        return len(receipts)

    def _apply_ack(self, queue, receipts):
        for receipt in receipts:
            lease = queue.end_lease(receipt)
            queue.notes.pop(message.message_id(lease.stored), None)
        queue.acked_total += len(receipts)

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
            change = (receipt, hidden if delay > 0 and not dead else None, now + delay, reason, now)
            sequence = self._write_ahead("nack", name, *change)
            self._with_dead_letter_lock(queue, self._apply_nack, *change)
        self._make_durable(expired, sequence)
        return {
            "id": message.format_id(message.message_id(lease.stored)),
            "deliveries": lease.deliveries,
            "dead_lettered": dead,
        }

    def _apply_nack(self, queue, receipt, hidden, until, reason, now):
        """The caller holds queue's lock and its dead-letter queue's."""
        queue.set_nack_reason(queue.leases[receipt].stored, reason)
        if hidden is not None:
            queue.hide(receipt, hidden, until)
        else:
            self._apply_return(queue, [receipt], reason, now)

    def extend(self, name, receipt, seconds):
        """Make a lease end seconds from now; returns the lease's id, receipt and new expiry.

        Not journaled: after a restart every lease is over anyway.
        """
        queue = self._get(name)
        with queue.lock:
            now = self._clock()
            expired = self._expire(queue, now)
            lease = queue.extend(receipt, now + seconds)
            if lease is None:
                raise ReceiptInvalid.one()
        self._make_durable(expired)
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
        forms = [
            message.browsed(stored, deliveries, note, expires_at)
            for (stored, deliveries, expires_at), note in zip(shown, notes, strict=True)
        ]
        return forms, total

    def purge(self, name):
        """Drop every message, leased ones included (their receipts end); returns how many."""
        queue = self._get(name)
        with queue.lock:
            if queue.deleted:
                raise QueueNotFound(name)
            sequence = self._write_ahead("purge", name)
            purged = queue.clear()
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
            chosen, kept, full = self._choose_moves(queue, moves, targets)
            sequence = self._write_ahead("redrive", name, chosen) if chosen else None
            moved = self._apply_redrive(queue, chosen, targets)
        self._make_durable(sequence)
        return moved, kept, full

    @staticmethod
    def _choose_moves(queue, moves, targets):
        """The (id, destination) moves that can happen now; the caller holds every lock involved."""
        present = {message.message_id(stored) for stored in queue.messages}
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

    @staticmethod
    def _apply_redrive(queue, chosen, targets):
        """Move the chosen messages to their destinations' tails; the caller holds every lock."""
        destination_of = dict(chosen)
        moved = {}
        for stored in queue.remove_for_redrive(set(destination_of)):
            destination = destination_of[message.message_id(stored)]
            targets[destination].append([stored])
            moved[destination] = moved.get(destination, 0) + 1
        return moved

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
            return self._with_dead_letter_lock(queue, self._return, due, now)
        except StorageUnavailable:
            queue.schedule(due)  # still leased: the next sweep or pull tries again
            raise

    def _with_dead_letter_lock(self, queue, change, *args):
        """Run change(queue, *args) also holding the lock of queue's dead-letter queue, if any."""
        target = queue.dead_letter_target
        with target.lock if target is not None else contextlib.nullcontext():
            return change(queue, *args)

    def _return(self, queue, receipts, now):
        """Journal and apply the end of expired leases; the caller holds both locks."""
        sequence = self._write_ahead("return", queue.name, receipts, now)
        self._apply_return(queue, receipts, EXPIRED_REASON, now)
        return sequence

    def _apply_return(self, queue, receipts, reason, now):
        """Put ended leases back at the head, or dead-letter those out of deliveries with reason."""
        leases = [queue.end_lease(receipt) for receipt in receipts]
        limit = queue.max_deliveries
        dead = [lease for lease in leases if limit is not None and lease.deliveries >= limit]
        queue.put_back([lease for lease in leases if lease not in dead])
        if dead:
            notes = [queue.notes.pop(message.message_id(lease.stored), None) or {} for lease in dead]
            for lease, note in zip(dead, notes, strict=True):
                note["dead_letter"] = {
                    "source_queue": queue.name,
                    "deliveries": lease.deliveries,
                    "dead_lettered_at": now,
                    "reason": reason,
                }
            queue.dead_letter_target.add_dead_letters(dead, notes)
            queue.dead_lettered_total += len(dead)

    # --- snapshot, restore, replay ----------------------------------------------------------

    def snapshot(self, unless_token=None):
        """Copy the whole state as plain types; returns (state, token), or None if the state's token
        is still unless_token (nothing changed since that snapshot).

        Every lock is held for the copy, so the state is one instant's, and with a journal the next
        generation starts at that instant: state["journal_generation"] is the first generation that
        the state does not hold.
        """
        with self._lock, contextlib.ExitStack() as held:
            queues = sorted(self._queues.values(), key=lock_order)
            for queue in queues:
                held.enter_context(queue.lock)
            token = (self._registry_changes, *(queue.changes for queue in queues))
            if token == unless_token:
                return None
            saved = [queue.settings() for queue in sorted(queues, key=lambda q: q.name)]
            generation = self._next_generation()
        # Drawn after the copy, so every copied id is below it.
        state = {
            "version": SNAPSHOT_VERSION,
            "next_id": next(self._ids),
            "journal_generation": generation,
            "queues": saved,
        }
        return state, token

    def _next_generation(self):
        if self._journal is None:
            return self._generation
        try:
            return self._journal.rotate()
        except journal_format.JournalWriteError as exc:
            raise StorageUnavailable(str(exc)) from exc

    @classmethod
    def restore(cls, state=None, records=(), clock=time.time, max_waiting=UNLIMITED_WAITERS):
        """A manager holding a snapshot's state (None: empty) and the journal records written after
        it, leases included: end_leases_after_restart ends them once the journal is started.
        """
        manager = cls(next_id=state["next_id"] if state else None, clock=clock, max_waiting=max_waiting)
        for saved in state["queues"] if state else ():
            manager._queues[saved["name"]] = Queue.from_settings(saved)
        for queue in manager._queues.values():
            if queue.dead_letter_queue is not None:
                queue.dead_letter_target = manager._queues[queue.dead_letter_queue]
        manager._replay(records)
        return manager

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
                    sequences.append(self._write_ahead("restart", queue.name))
                    queue.end_all_leases()
        self._make_durable(*sequences)

    def _replay(self, records):
        """Apply journal records; locks are taken as in normal running."""
        for kind, name, *args in records:
            if kind == "create":
                with self._lock:
                    self._apply_create(name, *args)
                continue
            queue = self._queues[name]
            with self._lock if kind == "delete" else contextlib.nullcontext(), queue.lock:
                if kind == "delete":
                    self._apply_delete(queue)
                elif kind == "push":
                    queue.append(args[0])
                    if len(args) > 1:
                        queue.remember(*args[1])
                    self._ids = itertools.count(max(next(self._ids), message.message_id(args[0][-1]) + 1))
                elif kind == "take":
                    queue.take(args[0])
                elif kind == "lease":
                    queue.lease(*args)
                elif kind == "ack":
                    self._apply_ack(queue, args[0])
                elif kind == "return":
                    # Journals written before dead letters carried a note have no time.
                    now = args[1] if len(args) > 1 else self._clock()
                    self._with_dead_letter_lock(queue, self._apply_return, args[0], EXPIRED_REASON, now)
                elif kind == "nack":
                    self._with_dead_letter_lock(queue, self._apply_nack, *args)
                elif kind == "purge":
                    queue.clear()
                elif kind == "redrive":
                    self._replay_redrive(queue, args[0])
                elif kind == "restart":
                    queue.end_all_leases()

    def _replay_redrive(self, queue, chosen):
        """Apply a journaled redrive; the caller holds queue's lock, this takes the destinations'."""
        targets = {destination: self._queues[destination] for _, destination in chosen}
        with contextlib.ExitStack() as held:
            for target in {id(t): t for t in targets.values() if t is not queue}.values():
                held.enter_context(target.lock)
            self._apply_redrive(queue, chosen, targets)
