"""The memory backend as one part of the app: its queues, recovered from disk at start-up, and the
threads that keep them (snapshots, the journal's checker, the lease sweeper)."""

from queues.memory.recovery import recover
from queues.memory.snapshotter import Snapshotter
from queues.message import iso_timestamp
from queues.sweeper import LeaseSweeper
from storage.folder_lock import FolderLock
from storage.journal import ignore_file_size_signal


class MemoryBackend:
    """Recovers the state when built; start() starts its threads, stop() writes the final snapshot."""

    def __init__(self, config):
        persistence = config.persistence
        persistence.path.parent.mkdir(parents=True, exist_ok=True)
        ignore_file_size_signal()
        self._folder_lock = FolderLock(persistence.path)
        try:
            self.queues, self.journal = recover(persistence, config.queues.max_waiting_pulls)
        except BaseException:
            self._folder_lock.release()
            raise
        self.snapshotter = Snapshotter(
            self.queues, persistence.path, persistence.interval_seconds, self._folder_lock
        )
        self._sweeper = LeaseSweeper(self.queues)

    def start(self):
        self.snapshotter.start()
        if self.journal is not None:
            self.journal.start()
        self._sweeper.start()

    def stop(self):
        """Refuse changes, write the final snapshot, close the journal and free the data folder."""
        self._sweeper.stop()
        self.queues.close()
        self.snapshotter.stop()
        if self.journal is not None:
            self.journal.close()
        self._folder_lock.release()

    def health(self):
        """(failing, details) for GET /health: failing while the last snapshot or journal write failed."""
        snapshotter = self.snapshotter
        journal_error = self.journal.failure if self.journal is not None else None
        saved_at = snapshotter.last_saved_at
        return snapshotter.last_error is not None or journal_error is not None, {
            "storage": {"backend": "memory", "last_error": journal_error or snapshotter.last_error},
            "snapshot": {
                "last_saved_at": None if saved_at is None else iso_timestamp(saved_at),
                "last_error": snapshotter.last_error,
            },
            "journal": {"enabled": self.journal is not None, "last_error": journal_error},
        }
