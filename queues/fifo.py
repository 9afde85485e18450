"""One queue's state: available messages in FIFO order, and leased (in-flight) messages.

Nothing here locks: every method expects the caller (queues.memory.manager) to hold the queue's lock.
"""

import heapq
import threading
from collections import OrderedDict, deque

from queues import message
from queues.queue_info import STORED, STORED_TYPES, TOTALS, queue_info


class Lease:
    """A message handed out on a lease, hidden from other pullers until acked, nacked or expired."""

    __slots__ = ("stored", "receipt", "expires_at", "deliveries")

    def __init__(self, stored, receipt, expires_at, deliveries):
        self.stored = stored
        self.receipt = receipt
        self.expires_at = expires_at
        self.deliveries = deliveries

    def render(self, note=None):
        """The pulled form with the lease fields (and the message's note), as JSON bytes."""
        extra = b',"receipt":"%s","lease_expires_at":"%s","deliveries":%d' % (
            self.receipt.encode(),
            message.iso_timestamp(self.expires_at).encode(),
            self.deliveries,
        )
        return message.render(self.stored, extra + message.note_members(note))


class Queue:
    """One queue's settings, counters and messages; the caller holds lock for every method."""

    def __init__(self, name, max_messages, schema, created_at, max_deliveries=None, dead_letter_queue=None):
        self.name = name
        self.max_messages = max_messages
        self.schema = schema
        self.created_at = created_at
        self.max_deliveries = max_deliveries
        self.dead_letter_queue = dead_letter_queue
        self.dead_letter_target = None  # the Queue named by dead_letter_queue, set by the manager
        self.pushed_total = 0
        self.pulled_total = 0
        self.acked_total = 0
        self.dead_lettered_total = 0
        self.messages = deque()
        # Delivery counts of available messages that were leased before (by message id).
        self.deliveries = {}
        self.leases = {}
        # Notes kept beside messages, available or leased (by message id): see message.note_members.
        self.notes = {}
        # Idempotency-Key -> (digest, ids, size, expires_at) of a push, oldest first.
        self.idempotency = OrderedDict()
        self.waiting = 0  # long polls waiting on this queue now
        self._expiries = []  # heap of (expires_at, receipt); entries go stale on ack or extend
        self.deleted = False
        self.changes = 0
        self.lock = threading.Lock()
        self.not_empty = threading.Condition(self.lock)

    def size(self):
        """Messages held, leased ones included: what max_messages limits."""
        return len(self.messages) + len(self.leases)

    def info(self):
        """QueueInfo as the API shows it."""
        oldest = message.enqueued_at(self.messages[0]) if self.messages else None
        stored = {f: getattr(self, f) for f in STORED}
        return queue_info(self.name, self.size(), len(self.leases), stored, oldest, self.waiting)

    def append(self, stored):
        """Add stored messages at the tail."""
        self.messages.extend(stored)
        self.pushed_total += len(stored)
        self.changes += 1
        self.not_empty.notify(len(stored))

    def take(self, count):
        """Remove up to count messages from the head, for good; returns [(stored, note)]."""
        taken = [self.messages.popleft() for _ in range(min(count, len(self.messages)))]
        notes = [self.notes.pop(message.message_id(stored), None) for stored in taken] if self.notes else None
        if taken:
            if self.deliveries:
                for stored in taken:
                    self.deliveries.pop(message.message_id(stored), None)
            self.pulled_total += len(taken)
            self.changes += 1
        return list(zip(taken, notes or [None] * len(taken), strict=True))

    def lease(self, receipts, expires_at):
        """Move one head message per receipt into flight until expires_at; returns the Leases.

        The caller makes sure there are at least len(receipts) available messages.
        """
        leases = []
        for receipt in receipts:
            stored = self.messages.popleft()
            deliveries = self.deliveries.pop(message.message_id(stored), 0) + 1
            lease = Lease(stored, receipt, expires_at, deliveries)
            self.leases[receipt] = lease
            heapq.heappush(self._expiries, (expires_at, receipt))
            leases.append(lease)
        if leases:
            self.pulled_total += len(leases)
            self.changes += 1
        return leases

    def end_lease(self, receipt):
        """Remove and return the Lease of receipt, or None if there is none."""
        lease = self.leases.pop(receipt, None)
        if lease is not None:
            self.changes += 1
            self._drop_stale_expiries()
        return lease

    def _drop_stale_expiries(self):
        # Acked leases leave their heap entries behind until they come due; with long leases that
        # could be hours of entries, so rebuild the heap once most of it is stale.
        if len(self._expiries) > 2 * len(self.leases) + 1024:
            self._expiries = [(lease.expires_at, lease.receipt) for lease in self.leases.values()]
            heapq.heapify(self._expiries)

    def extend(self, receipt, expires_at):
        """Move the lease's expiry; returns the Lease, or None if there is none."""
        lease = self.leases.get(receipt)
        if lease is not None:
            lease.expires_at = expires_at
            heapq.heappush(self._expiries, (expires_at, receipt))
            self.changes += 1
            self._drop_stale_expiries()
        return lease

    def due(self, now):
        """Unschedule and return the receipts of leases that end at or before now.

        They stay leased until end_lease; schedule() puts them back if they are not ended after all.
        """
        receipts = {}  # a dict for its order: an extend back to an earlier expiry leaves two entries
        while self._expiries and self._expiries[0][0] <= now:
            expires_at, receipt = heapq.heappop(self._expiries)
            lease = self.leases.get(receipt)
            if lease is not None and lease.expires_at == expires_at:
                receipts[receipt] = None
        return list(receipts)

    def schedule(self, receipts):
        """Schedule the expiry of these leases again (after due() took them)."""
        for receipt in receipts:
            heapq.heappush(self._expiries, (self.leases[receipt].expires_at, receipt))

    def put_back(self, leases):
        """Return ended leases' messages to the head, oldest first, keeping their delivery counts."""
        for lease in sorted(leases, key=lambda lease: message.message_id(lease.stored), reverse=True):
            self.messages.appendleft(lease.stored)
            self.deliveries[message.message_id(lease.stored)] = lease.deliveries
        if leases:
            self.changes += 1
            self.not_empty.notify(len(leases))

    def hide(self, receipt, hidden_receipt, expires_at):
        """Move a lease to a receipt no worker holds, until expires_at (a nack with a delay)."""
        lease = self.end_lease(receipt)
        self.leases[hidden_receipt] = Lease(lease.stored, hidden_receipt, expires_at, lease.deliveries)
        heapq.heappush(self._expiries, (expires_at, hidden_receipt))

    def set_nack_reason(self, stored, reason):
        """Keep the reason of the last nack with the message (None: forget any earlier one)."""
        number = message.message_id(stored)
        note = dict(self.notes.get(number) or {})
        note["last_nack_reason"] = reason
        if reason is None:
            del note["last_nack_reason"]
        self._set_note(number, note)

    def _set_note(self, number, note):
        if note:
            self.notes[number] = note
        else:
            self.notes.pop(number, None)

    def add_dead_letters(self, leases, notes):
        """Append messages that ran out of deliveries elsewhere, each with its note (dead_letter in
        it); a dead letter is never refused."""
        for lease, note in zip(leases, notes, strict=True):
            self.notes[message.message_id(lease.stored)] = note
        self.messages.extend(lease.stored for lease in leases)
        self.pushed_total += len(leases)
        self.changes += 1
        self.not_empty.notify(len(leases))

    def clear(self):
        """Drop every message, leased ones included; returns how many there were."""
        count = self.size()
        self.messages.clear()
        self.leases.clear()
        self.deliveries.clear()
        self.notes.clear()
        self._expiries.clear()
        self.changes += 1
        return count

    def remember(self, key, digest, ids, size, expires_at):
        """Keep a push's reply under its Idempotency-Key until expires_at."""
        self.idempotency[key] = (digest, ids, size, expires_at)
        self.changes += 1

    def remembered(self, key, now):
        """(digest, ids, size) of the push under key, or None; forgets the keys expired by now."""
        while self.idempotency and next(iter(self.idempotency.values()))[3] <= now:
            self.idempotency.popitem(last=False)
        found = self.idempotency.get(key)
        # Expiries are not in insertion order when the lifetime was lowered, or the clock stepped back.
        return None if found is None or found[3] <= now else found[:3]

    def available_among(self, numbers):
        """Which of the ids numbers are available, found from the head: a redrive's page lies near
        it, so this stops long before the tail of a large queue."""
        found = set()
        for stored in self.messages:
            if len(found) == len(numbers):
                break
            number = message.message_id(stored)
            if number in numbers:
                found.add(number)
        return found

    def remove_for_redrive(self, numbers):
        """Remove available messages by id (found near the head); returns them in queue order."""
        removed, kept = [], []
        while len(removed) < len(numbers) and self.messages:
            stored = self.messages.popleft()
            number = message.message_id(stored)
            if number in numbers:
                removed.append(stored)
                self.deliveries.pop(number, None)
                self.notes.pop(number, None)
            else:
                kept.append(stored)
        self.messages.extendleft(reversed(kept))
        self.changes += 1
        return removed

    def settings(self):
        """Everything to save, as plain types: settings, counters, messages and leases.

        Leases are saved with their receipts, so journal records written after this copy (an ack,
        say) still find them; start-up ends every lease once the journal is replayed.
        """
        in_flight = sorted(self.leases.values(), key=lambda lease: message.message_id(lease.stored))
        return {
            "name": self.name,
            **{field: getattr(self, field) for field in STORED},
            "deliveries": dict(self.deliveries),
            "notes": {number: dict(note) for number, note in self.notes.items()},
            "idempotency": [(key, *remembered) for key, remembered in self.idempotency.items()],
            "leases": [
                (lease.receipt, lease.stored, lease.expires_at, lease.deliveries) for lease in in_flight
            ],
            "messages": list(self.messages),
        }

    @staticmethod
    def check_settings(saved):
        """Raise ValueError unless saved (read from a snapshot file) has settings()'s shape."""
        for key, kind in {"name": str, **STORED_TYPES, "deliveries": dict, "leases": list}.items():
            if not isinstance(saved, dict) or not isinstance(saved.get(key), kind):
                raise ValueError(f"queue settings lack a valid {key!r}")
        for lease in saved["leases"]:
            if not (isinstance(lease, tuple) and list(map(type, lease)) == [str, bytes, float, int]):
                raise ValueError("a lease is not (receipt, message, expiry, deliveries)")

    @classmethod
    def from_settings(cls, saved):
        """The queue that settings() described."""
        queue = cls(
            saved["name"],
            saved["max_messages"],
            saved["schema"],
            saved["created_at"],
            saved["max_deliveries"],
            saved["dead_letter_queue"],
        )
        for total in TOTALS:
            setattr(queue, total, saved[total])
        queue.deliveries = dict(saved["deliveries"])
        # Snapshots written before notes and idempotency keys existed have neither.
        queue.notes = {number: dict(note) for number, note in saved.get("notes", {}).items()}
        for key, *remembered in saved.get("idempotency", ()):
            queue.idempotency[key] = tuple(remembered)
        for receipt, stored, expires_at, deliveries in saved["leases"]:
            queue.leases[receipt] = Lease(stored, receipt, expires_at, deliveries)
        queue.schedule(list(queue.leases))
        queue.messages.extend(saved["messages"])
        return queue

    def end_all_leases(self):
        """Put every leased message back at the head (at start-up: a restart ends every lease)."""
        self.put_back([self.end_lease(receipt) for receipt in list(self.leases)])
