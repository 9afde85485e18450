"""Start-up recovery: the snapshot, then every journal generation it does not hold, then a new journal."""

import logging

from queues.fifo import Queue
from queues.memory.changes import decode
from queues.memory.manager import SNAPSHOT_VERSION, MemoryQueueManager
from queues.memory.snapshot_check import check_snapshot
from storage.journal import Journal, JournalError, generations, journal_path, read_records
from storage.snapshot import load_snapshot

log = logging.getLogger(__name__)


def read_changes(path):
    """The change records of one journal file; raises JournalError naming the file."""
    try:
        return [decode(record) for record in read_records(path)]
    except ValueError as exc:
        raise JournalError(f"{path}: {exc}") from exc


def read_durable(path):
    """(snapshot state or None, the changes journaled after it, the next journal generation) as
    the files beside path hold them. Raises SnapshotError or JournalError naming the file."""
    state = load_snapshot(path, SNAPSHOT_VERSION, Queue.check_settings)
    if state is None:
        log.info("no snapshot at %s: starting empty", path)
    else:
        check_snapshot(path, state)
    first = state["journal_generation"] if state else 0
    pending = [g for g in generations(path) if g >= first]
    replayed = [change for g in pending for change in read_changes(journal_path(path, g))]
    if replayed:
        log.info("replaying %d journal records from generations %s", len(replayed), pending)
    # Never append to a replayed file: it may end in a torn record.
    return state, replayed, max([first - 1, *pending]) + 1


def recover(persistence, max_waiting):
    """(manager, journal): a MemoryQueueManager holding the durable state, journaling from now on
    into journal if persistence.journal (else journal is None).

    Raises SnapshotError or JournalError (naming the file) when the state cannot be read.
    """
    path = persistence.path
    state, replayed, generation = read_durable(path)
    manager = MemoryQueueManager.restore(state, replayed, max_waiting=max_waiting)
    journal = Journal(path, generation, persistence.fsync) if persistence.journal else None
    manager.start_journal(generation, journal)
    manager.end_leases_after_restart()
    return manager, journal
