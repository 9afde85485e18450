"""Redrive: dead letters back to the queues they came from, for both backends.

Each backend gives two primitives: dead_letter_page(name, offset, limit), the available messages
from offset as (stored, note) pairs, and move_dead_letters(name, moves), which moves each
(stored, destination) pair atomically and returns ({destination: moved}, kept, full). This loop
decides where each message goes (and whether the destination's schema takes it) outside any lock.
"""

from queues import message
from queues.errors import QueueNotFound

PAGE = 100  # messages moved per atomic step of the backend: a large redrive never holds a lock long


def source_queue(note):
    """The queue a dead letter came from, or None (pushed straight into the queue)."""
    dead = (note or {}).get("dead_letter")
    return None if dead is None else dead["source_queue"]


def redrive(backend, name, max_count=None, to=None, accepts=None):
    """Move dead letters of queue name, oldest first, to their source queue (or to); see QueueBackend."""
    backend.require(name)
    if to is not None:
        backend.require(to)
    schemas, by_queue, moved, kept = {}, {}, 0, 0
    while max_count is None or moved < max_count:
        limit = PAGE if max_count is None else min(PAGE, max_count - moved)
        page = backend.dead_letter_page(name, kept, limit)
        if not page:
            break
        moves = []
        for stored, note in page:
            destination = to or source_queue(note)
            if destination is not None and _accepted(backend, schemas, destination, stored, accepts):
                moves.append((stored, destination))
            else:
                kept += 1
        done, refused, full = backend.move_dead_letters(name, moves) if moves else ({}, 0, False)
        kept += refused
        for destination, count in done.items():
            by_queue[destination] = by_queue.get(destination, 0) + count
            moved += count
        if full:
            break
    info = backend.info(name)
    return {"moved": moved, "remaining": info["size"] - info["in_flight"], "by_queue": by_queue}


def _accepted(backend, schemas, destination, stored, accepts):
    """Whether destination exists and its schema takes the stored message."""
    if destination not in schemas:
        try:
            schemas[destination] = (True, backend.schema_of(destination))
        except QueueNotFound:
            schemas[destination] = (False, None)
    exists, schema = schemas[destination]
    if not exists:
        return False
    return accepts is None or accepts(schema, bytes(memoryview(stored)[message.HEADER_SIZE :]))
