"""Every change the memory backend makes to its queues, as a record with one apply(state).

A live operation checks the request under the locks, builds a record, journals it and applies it;
start-up replays the journal through the same apply. So there is one copy of each change, and
replay cannot drift from what the service did.

Records travel through the journal as plain tuples, (kind, *fields) in field order, because the
journal's reader refuses classes; plain() and decode() are the two directions. A new kind of change
is one class here: a Change subclass decorated with @change, with a `kind` and an apply().

apply() runs with the locks of what it changes held (the caller's job, see queues.memory.manager),
and after every check passed: it does not fail.
"""

from collections.abc import Callable
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import ClassVar

from queues import message
from queues.fifo import Queue

KINDS = {}  # kind -> record class
EXPIRED_REASON = "lease_expired"  # dead_letter.reason of a message whose last lease expired


class State:
    """What the records change: the queues by name, and a counter of changes to that dict."""

    __slots__ = ("queues", "registry_changes")

    def __init__(self):
        self.queues = {}
        self.registry_changes = 0


class Change:
    """A change of the state; subclasses are frozen dataclasses whose first field is the queue's name,
    with an apply(state)."""

    __slots__ = ()
    kind: ClassVar[str]
    _fields_of: ClassVar[Callable]  # record -> tuple of its field values

    def plain(self):
        """The record as the journal stores it: (kind, *fields)."""
        return (self.kind, *self._fields_of(self))

    def other_queues(self):
        """Names of the queues besides the first field's (and its dead-letter queue) it changes."""
        return ()


def change(cls):
    """Make cls a frozen, slotted dataclass and register it under its kind."""
    if "apply" not in vars(cls):
        raise TypeError(f"change {cls.__name__} has no apply(state)")
    made = dataclass(frozen=True, slots=True)(cls)
    # attrgetter of two or more names returns a tuple; of one, the bare value.
    names = [field.name for field in fields(made)]
    getter = attrgetter(*names) if len(names) > 1 else lambda record: (getattr(record, names[0]),)
    made._fields_of = staticmethod(getter)
    KINDS[made.kind] = made
    return made


def decode(plain):
    """The record of a journal tuple; raises ValueError for an unknown kind or wrong fields."""
    try:
        return KINDS[plain[0]](*plain[1:])
    except (KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"not a change record: {plain!r:.80}") from exc


@change
class Create(Change):
    kind = "create"
    name: str
    max_messages: int
    schema: str | None
    created_at: float
    max_deliveries: int | None
    dead_letter_queue: str | None

    def apply(self, state):
        """Returns the new Queue."""
        queue = Queue(
            self.name,
            self.max_messages,
            self.schema,
            self.created_at,
            self.max_deliveries,
            self.dead_letter_queue,
        )
        if self.dead_letter_queue is not None:
            # It cannot be deleted while this queue names it, so the reference stays valid.
            queue.dead_letter_target = state.queues[self.dead_letter_queue]
        state.queues[self.name] = queue
        state.registry_changes += 1
        return queue


@change
class Delete(Change):
    kind = "delete"
    name: str

    def apply(self, state):
        """Returns how many messages went with the queue."""
        queue = state.queues.pop(self.name)
        state.registry_changes += 1
        queue.deleted = True
        queue.not_empty.notify_all()
        return queue.clear()


@change
class Push(Change):
    kind = "push"
    name: str
    stored: list  # stored messages (queues.message.pack), ids drawn by the caller
    # With an Idempotency-Key: (key, digest, ids, size, expires_at), the reply a repeat gets.
    remembered: tuple | None = None

    def apply(self, state):
        queue = state.queues[self.name]
        if self.remembered is not None:
            queue.remember(*self.remembered)
        queue.append(self.stored)


@change
class Take(Change):
    """A pull without a lease: count head messages leave for good."""

    kind = "take"
    name: str
    count: int

    def apply(self, state):
        """Returns the stored messages taken."""
        return state.queues[self.name].take(self.count)


@change
class Lease(Change):
    """A pull on a lease: one head message per receipt goes in flight until expires_at."""

    kind = "lease"
    name: str
    receipts: list
    expires_at: float

    def apply(self, state):
        """Returns the fifo.Lease of each receipt."""
        return state.queues[self.name].lease(self.receipts, self.expires_at)


@change
class Ack(Change):
    kind = "ack"
    name: str
    receipts: list

    def apply(self, state):
        queue = state.queues[self.name]
        for receipt in self.receipts:
            lease = queue.end_lease(receipt)
            queue.notes.pop(message.message_id(lease.stored), None)
        queue.acked_total += len(self.receipts)


def _return_leases(queue, receipts, reason, now):
    """End leases: back at the head, or dead-lettered once out of deliveries, with their notes."""
    leases = [queue.end_lease(receipt) for receipt in receipts]
    limit = queue.max_deliveries
    dead = [lease for lease in leases if limit is not None and lease.deliveries >= limit]
    # Leases due at one instant come in receipt order: the dead-letter queue keeps the queue's order.
    dead.sort(key=lambda lease: message.message_id(lease.stored))
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


@change
class Return(Change):
    """Leases ended by expiry: back at the head, or dead-lettered once out of deliveries.

    The caller also holds the lock of the queue's dead-letter queue.
    """

    kind = "return"
    name: str
    receipts: list
    now: float = 0.0  # when they expired (journals from before dead letters had notes: unknown)

    def apply(self, state):
        _return_leases(state.queues[self.name], self.receipts, EXPIRED_REASON, self.now)


@change
class Nack(Change):
    """A lease ended by its worker: its reason kept with the message; then, with hidden (a receipt
    no worker holds), the message stays in flight until `until`; without, it is returned at once.

    The caller also holds the lock of the queue's dead-letter queue.
    """

    kind = "nack"
    name: str
    receipt: str
    hidden: str | None
    until: float
    reason: str | None
    now: float

    def apply(self, state):
        """Returns the leases that went to the dead-letter queue."""
        queue = state.queues[self.name]
        queue.set_nack_reason(queue.leases[self.receipt].stored, self.reason)
        if self.hidden is not None:
            queue.hide(self.receipt, self.hidden, self.until)
        else:
            _return_leases(queue, [self.receipt], self.reason, self.now)


@change
class Purge(Change):
    """Every message of the queue goes, leased ones included; settings, counters and keys stay."""

    kind = "purge"
    name: str

    def apply(self, state):
        """Returns how many messages went."""
        return state.queues[self.name].clear()


@change
class Redrive(Change):
    """Available messages of the queue (by id) move to the tails of their destinations.

    The caller holds the locks of the queue and of every destination.
    """

    kind = "redrive"
    name: str
    moves: list  # (message id, destination queue name), in queue order

    def other_queues(self):
        return tuple({destination for _, destination in self.moves})

    def apply(self, state):
        """Returns {destination: how many moved there}."""
        destination_of = dict(self.moves)
        moved = {}
        for stored in state.queues[self.name].remove_for_redrive(set(destination_of)):
            destination = destination_of[message.message_id(stored)]
            state.queues[destination].append([stored])
            moved[destination] = moved.get(destination, 0) + 1
        return moved


@change
class Extend(Change):
    kind = "extend"
    name: str
    receipt: str
    expires_at: float

    def apply(self, state):
        """Returns the fifo.Lease."""
        return state.queues[self.name].extend(self.receipt, self.expires_at)


@change
class Restart(Change):
    """A restart ends every lease of the queue: the messages are back at the head, counts kept."""

    kind = "restart"
    name: str

    def apply(self, state):
        state.queues[self.name].end_all_leases()
