"""The request log's writer: a QueueHandler/QueueListener pair that never wakes a thread per line.

A request thread only appends its entry to a deque (QueueHandler.enqueue, no lock, no LogRecord,
no wake-up). The listener thread drains the deque, formats each entry and writes it into a buffered
file; when the deque is empty it flushes the file, lets logrotate's move be seen, and sleeps a
moment. Waking the writer for every line would make the two threads trade the GIL on every
request. A file that cannot be written never stops the writer: it drops and counts lines, and heals.
"""

import logging
import os
import threading
import time
from collections import deque
from logging.handlers import QueueHandler, QueueListener

log = logging.getLogger(__name__)

IDLE_SECONDS = 0.1
# How often a file that could not be written is tried again.
RETRY_SECONDS = 1.0


class _DrainingQueue:
    """The queue between the handler and the listener: put never blocks, get sleeps when empty.

    Only the listener's stop sentinel wakes it early, so that closing does not wait out a sleep.
    """

    def __init__(self, when_empty):
        self._items = deque()
        self._when_empty = when_empty
        self._stopping = threading.Event()

    def put_nowait(self, item):
        self._items.append(item)
        if item is QueueListener._sentinel:
            self._stopping.set()

    def get(self, block=True):
        while True:
            try:
                return self._items.popleft()
            except IndexError:
                self._when_empty()
                self._stopping.wait(IDLE_SECONDS)


class _HealingFileHandler(logging.Handler):
    """Appends formatted entries to a buffered file, without a flush or a stat per entry.

    idle() flushes and reopens the file if its path now names another file (logrotate's move, a
    removed folder). A file that cannot be written makes the handler broken: entries are dropped
    and counted, failure says why, and the file is reopened at most every RETRY_SECONDS until it
    can be written again.
    """

    def __init__(self, path, on_drop):
        super().__init__()
        self.path = path
        self.failure = None
        self.dropped = 0
        self._on_drop = on_drop
        self._stream = None
        self._identity = None
        self._unflushed = 0  # lines written into the buffer since the last good flush
        self._next_open = 0.0
        self._open()

    def _open(self):
        self._next_open = time.monotonic() + RETRY_SECONDS
        try:
            # a+: appends, and lets pread below see the last byte.
            stream = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - kept open until closed
        except OSError as exc:
            self._broken(exc)
            return False
        try:
            stat = os.fstat(stream.fileno())
            if stat.st_size and os.pread(stream.fileno(), 1, stat.st_size - 1) != b"\n":
                stream.write("\n")  # a line cut off by the failure stays on its own
        except OSError as exc:
            self._stream = stream
            self._broken(exc)
            return False
        self._stream, self._identity = stream, (stat.st_dev, stat.st_ino)
        return True

    def _broken(self, exc):
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass  # its buffer is lost: counted below
        self._drop(self._unflushed)
        self._unflushed = 0
        if self.failure is None:
            log.error("request log: cannot write %s (%s); dropping lines until it can", self.path, exc)
        self.failure = f"cannot write the request log {self.path}: {exc.strerror or exc}"

    def _drop(self, lines):
        if lines:
            self.dropped += lines
            self._on_drop(lines)

    def emit(self, record):
        try:
            text = self.format(record) + "\n"
        except Exception:
            log.exception("request log: an entry could not be formatted")
            self._drop(1)
            return
        lines = text.count("\n")
        if self._stream is None and not (time.monotonic() >= self._next_open and self._open()):
            self._drop(lines)
            return
        try:
            self._stream.write(text)
            self._unflushed += lines
        except OSError as exc:
            self._broken(exc)
            self._drop(lines)

    def idle(self):
        """Flush, and reopen if the path names another file or a failed file may be writable again."""
        if self._stream is None:
            if time.monotonic() >= self._next_open:
                self._open()
            return
        try:
            self._stream.flush()
        except OSError as exc:
            self._broken(exc)
            return
        self._unflushed = 0
        if self.failure is not None:
            log.warning("request log: writing %s again", self.path)
            self.failure = None
        try:
            stat = os.stat(self.path)
            moved = (stat.st_dev, stat.st_ino) != self._identity
        except OSError:
            moved = True
        if moved:
            self._reopen()

    def _reopen(self):
        stream, self._stream = self._stream, None
        try:
            stream.close()
        except OSError as exc:
            self._stream = stream
            self._broken(exc)
            return
        self._open()

    def close(self):
        if self._stream is not None:
            try:
                self._stream.close()
            except OSError as exc:
                self._broken(exc)
            self._stream = None
        super().close()


class LogWriter:
    """Formats entries with formatter (a logging.Formatter taking the entry as the record) and
    appends them to the file at path, from its own thread; on_drop(n) is told of lines dropped."""

    def __init__(self, path, formatter, on_drop=lambda lines: None):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file_handler = _HealingFileHandler(path, on_drop)
        self._file_handler.setFormatter(formatter)
        self._handler = QueueHandler(_DrainingQueue(self._file_handler.idle))
        self._listener = QueueListener(self._handler.queue, self._file_handler)
        self._listener.prepare = lambda entry: entry
        self._listener.start()
        self._closed = False

    @property
    def failure(self):
        """Why the file cannot be written, or None while it can."""
        return self._file_handler.failure

    @property
    def dropped(self):
        """Lines that could not be written, since start."""
        return self._file_handler.dropped

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
