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

from queues.fifo import Queue

KINDS = {}  # kind -> record class


class State:
    """What the records change: the queues by name, and a counter of changes to that dict."""

    __slots__ = ("queues", "registry_changes")

    def __init__(self):
        self.queues = {}
        self.registry_changes = 0


class Change:
    """A change of the state; subclasses are frozen dataclasses whose first field is the queue's name."""

    __slots__ = ()
    kind: ClassVar[str]
    _fields_of: ClassVar[Callable]  # record -> tuple of its field values

    def plain(self):
        """The record as the journal stores it: (kind, *fields)."""
        return (self.kind, *self._fields_of(self))

    def apply(self, state):
        raise NotImplementedError


def change(cls):
    """Make cls a frozen, slotted dataclass and register it under its kind."""
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

    def apply(self, state):
        state.queues[self.name].append(self.stored)


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
            queue.end_lease(receipt)
        queue.acked_total += len(self.receipts)


@change
class Return(Change):
    """Leases ended by a nack or by expiry: back at the head, or dead-lettered once out of deliveries.

    The caller also holds the lock of the queue's dead-letter queue.
    """

    kind = "return"
    name: str
    receipts: list

    def apply(self, state):
        """Returns the leases that went to the dead-letter queue."""
        queue = state.queues[self.name]
        leases = [queue.end_lease(receipt) for receipt in self.receipts]
        limit = queue.max_deliveries
        dead = [lease for lease in leases if limit is not None and lease.deliveries >= limit]
        queue.put_back([lease for lease in leases if lease not in dead])
        if dead:
            queue.dead_letter_target.add_dead_letters(dead)
            queue.dead_lettered_total += len(dead)
        return dead


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
