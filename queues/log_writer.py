"""The request log's writer: a QueueHandler/QueueListener pair that never wakes a thread per line.

A request thread only appends its entry to a deque (QueueHandler.enqueue, no lock, no LogRecord,
no wake-up). The listener thread drains the deque, formats each entry and writes it into a buffered
file; when the deque is empty it flushes the file, lets logrotate's move be seen, and sleeps a
moment. Waking the writer for every line would make the two threads trade the GIL on every request.
"""

import logging
import time
from collections import deque
from logging.handlers import QueueHandler, QueueListener, WatchedFileHandler

log = logging.getLogger(__name__)

IDLE_SECONDS = 0.1


class _DrainingQueue:
    """The queue between the handler and the listener: put never blocks, get sleeps when empty."""

    def __init__(self, when_empty):
        self._items = deque()
        self._when_empty = when_empty

    def put_nowait(self, item):
        self._items.append(item)

    def get(self, block=True):
        while True:
            try:
                return self._items.popleft()
            except IndexError:
                self._when_empty()
                time.sleep(IDLE_SECONDS)


class _BufferedFileHandler(WatchedFileHandler):
    """Writes formatted entries without a flush or a stat per entry; idle() does both."""

    def emit(self, record):
        try:
            self.stream.write(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)

    def idle(self):
        try:
            self.flush()
            self.reopenIfNeeded()
        except OSError:
            log.exception("request log: cannot write %s", self.baseFilename)


class LogWriter:
    """Formats entries with formatter (a logging.Formatter taking the entry as the record) and
    appends them to the file at path, from its own thread."""

    def __init__(self, path, formatter):
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file_handler = _BufferedFileHandler(path, encoding="utf-8")
        self._file_handler.setFormatter(formatter)
        self._handler = QueueHandler(_DrainingQueue(self._file_handler.idle))
        self._listener = QueueListener(self._handler.queue, self._file_handler)
        self._listener.prepare = lambda entry: entry
        self._listener.start()
        self._closed = False

    def write(self, entry):
        """Queue one entry for writing; never blocks, never raises for the disk."""
        self._handler.enqueue(entry)

    def close(self):
        """Write what is queued, then stop the writer thread; safe to call more than once."""
        if self._closed:
            return
        self._closed = True
        self._listener.stop()
        self._file_handler.close()
