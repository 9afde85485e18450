"""Start-up recovery: the snapshot, then every journal generation it does not hold, then a new journal."""

import logging

from queues.manager import SNAPSHOT_VERSION, QueueManager
from queues.snapshot_check import check_snapshot
from storage.journal import Journal, generations, journal_path, read_records
from storage.snapshot import load_snapshot

log = logging.getLogger(__name__)


def recover(persistence, max_waiting):
    """A QueueManager holding the durable state, journaling from now on if persistence.journal.

    Raises SnapshotError or JournalError (naming the file) when the state cannot be read.
    """
    path = persistence.path
    state = load_snapshot(path, SNAPSHOT_VERSION)
    if state is None:
        log.info("no snapshot at %s: starting empty", path)
    else:
        check_snapshot(path, state)
    first = state["journal_generation"] if state else 0
    pending = [g for g in generations(path) if g >= first]
    records = [record for g in pending for record in read_records(journal_path(path, g))]
    if records:
        log.info("replaying %d journal records from generations %s", len(records), pending)
    manager = QueueManager.restore(state, records, max_waiting=max_waiting)
    # Never append to a replayed file: it may end in a torn record.
    generation = max([first - 1, *pending]) + 1
    journal = Journal(path, generation, persistence.fsync) if persistence.journal else None
    manager.start_journal(generation, journal)
    manager.end_leases_after_restart()
    return manager, journal
