"""The lease sweeper: returns expired leases to their queues even when nobody pulls."""

import logging
import threading

from queues.errors import StorageUnavailable

log = logging.getLogger(__name__)


class LeaseSweeper:
    """A thread that calls manager.expire_leases() every interval seconds, so long polls see them."""

    def __init__(self, manager, interval=0.25):
        self._manager = manager
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lease-sweeper", daemon=True)

    def start(self):
        self._thread.start()

    def _run(self):
        failing = False
        while not self._stop.wait(self._interval):
            try:
                self._manager.expire_leases()
                failing = False
            except StorageUnavailable as exc:
                # Four times a second while the storage is away: say so once, not every time.
                if not failing:
                    log.warning("lease sweeper: %s", exc)
                failing = True
            except Exception:
                log.exception("lease sweeper: unexpected error; will try again")

    def stop(self):
        """Stop the thread; safe to call more than once."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
