"""One process at a time in a data folder: a POSIX lock on <snapshot path>.lock while it runs.

Two processes on one folder would append to the same journal files and overwrite each other's
snapshots. The lock is the process's (fcntl.lockf), so it ends with the process, even after
kill -9. A worker started while another still holds it (gunicorn starts a reload's new worker before
the old one has written its final snapshot) waits for it, then starts from what it left.

The holder checks before each snapshot that the lock file is still the one it holds: a lock file
deleted, or a data folder renamed away and made again, would otherwise let a second process in.
"""

import fcntl
import logging
import os
import time
from pathlib import Path

log = logging.getLogger(__name__)

# Below gunicorn's 30 s worker timeout, which also bounds a worker's start.
WAIT_SECONDS = 20.0
_RETRY_SECONDS = 0.1


class DataFolderBusy(Exception):
    """Another process held the data folder's lock for longer than WAIT_SECONDS."""


class DataFolderLost(OSError):
    """Another process took the data folder while this one did not hold its lock file (deleted,
    replaced, or not writable at start-up)."""


class FolderLock:
    """The lock on snapshot_path's folder, taken when built; release() ends it."""

    def __init__(self, snapshot_path):
        self.path = Path(f"{snapshot_path}.lock")
        self._lost = None  # why the folder is no longer this process's
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            if os.access(self.path.parent, os.W_OK):
                raise  # the folder is writable: only this file is in the way, which a second could share
            # A read-only folder: nothing can be written there to clash over (without a journal
            # the service still starts, as before the lock). check() takes it before the first write.
            log.warning("%s: cannot take the lock (%s); taken before the first snapshot", self.path, exc)
            self._fd = None
            return
        deadline = time.monotonic() + WAIT_SECONDS
        while True:
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError:
                if time.monotonic() >= deadline:
                    os.close(self._fd)
                    raise DataFolderBusy(
                        f"{self.path}: another process has used this data folder for "
                        f"{WAIT_SECONDS:.0f} s; stop it, or give this one another [persistence] path"
                    ) from None
                time.sleep(_RETRY_SECONDS)

    def check(self):
        """Raise DataFolderLost unless this process still holds the folder's lock file.

        A lock file deleted or replaced (its folder renamed away and made again) is taken again
        when free. Once another process has taken it, the folder stays theirs: this one must never
        write there again, even after they stop. OSError when the file cannot be opened.
        """
        if self._lost is None:
            try:
                if self._fd is not None and os.path.samestat(os.stat(self.path), os.fstat(self._fd)):
                    return
            except FileNotFoundError:
                pass
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                self._lost = (
                    f"{self.path}: another process took this data folder while this one's lock file was gone"
                )
            else:
                self.release()  # frees only the old file's lock: POSIX locks are per file
                self._fd = fd
                return
        raise DataFolderLost(self._lost)

    def release(self):
        """End the lock; safe to call more than once (a backend may be stopped twice)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
