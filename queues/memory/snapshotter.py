"""The snapshot thread: saves the manager's state every interval and once more when stopped."""

import logging
import threading
import time

from storage.folder_lock import DataFolderLost
from storage.journal import JournalWriteError, remove_journals_before
from storage.snapshot import SnapshotError, save_snapshot

log = logging.getLogger(__name__)


class Snapshotter:
    """Periodically writes manager.snapshot() to path; keeps the last outcome for /health."""

    def __init__(self, manager, path, interval_seconds, folder_lock=None):
        self._manager = manager
        self._folder_lock = folder_lock
        self._path = path
        self._interval = interval_seconds
        self._stop = threading.Event()
        self._save_lock = threading.Lock()
        self._saved_token = None
        self._thread = threading.Thread(target=self._run, name="snapshotter", daemon=True)
        self.last_saved_at = None
        self.last_duration_seconds = None  # of the last snapshot written
        self.last_error = None
        self.failures = 0  # snapshots that could not be written, for /metrics

    def start(self):
        self._thread.start()

    def _run(self):
        while not self._stop.wait(self._interval):
            try:
                self.save()
            except Exception:
                log.exception("snapshot thread: unexpected error; will try again")

    def save(self):
        """Write a snapshot unless nothing changed since the last one; returns True if written."""
        with self._save_lock:
            started = time.perf_counter()
            try:
                if self._folder_lock is not None:
                    self._folder_lock.check()
                taken = self._manager.snapshot(unless_token=None if self.last_error else self._saved_token)
                if taken is None:
                    return False
                state, token = taken
                save_snapshot(self._path, state)
                remove_journals_before(self._path, state["journal_generation"])
            except (SnapshotError, JournalWriteError, OSError) as exc:
                lost = isinstance(exc, DataFolderLost)
                if lost:
                    self._manager.close(str(exc))  # nothing it accepts now could be saved
                if self.last_error is None:
                    then = "changes are refused from now on" if lost else "the service goes on"
                    log.error("%s; the previous snapshot is kept and %s", exc, then)
                self.last_error = str(exc)
                self.failures += 1
                return False
            if self.last_error is not None:
                log.info("snapshot %s written again after failures", self._path)
            self.last_error = None
            self._saved_token = token
            # The duration first: a reader that sees last_saved_at set also sees a duration.
            self.last_duration_seconds = time.perf_counter() - started
            self.last_saved_at = time.time()
            log.debug("snapshot %s written in %.3f s", self._path, self.last_duration_seconds)
            return True

    def stop(self):
        """Stop the thread and write a final snapshot; safe to call more than once."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self.save() or self.last_error is None:
            log.info("stopping: the final snapshot %s holds the final state", self._path)
