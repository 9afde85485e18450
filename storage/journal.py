"""The append-only journal: every change is written here before it is applied and answered.

Files are <snapshot path>.journal.<generation>. A snapshot records the generation that was started
when its state was copied; start-up loads the snapshot, then replays that generation and any later
one. Older generations are removed only once a snapshot that folds them in is safely on disk.

A record is: payload length and CRC-32 (8 bytes), the CRC-32 of those 8 bytes (4 bytes), then the
payload, a pickled tuple of plain values. Like the snapshot, it is read with an unpickler that
refuses every class.
"""

import contextlib
import ctypes
import errno
import logging
import os
import pickle
import signal
import struct
import threading
import zlib
from pathlib import Path

from storage.snapshot import plain_loads

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<II")
_HEADER_CHECK = struct.Struct("<I")
_RECORD_START = _HEADER.size + _HEADER_CHECK.size
CHECK_EVERY_SECONDS = 1.0

# write() called through ctypes.PyDLL keeps the GIL (os.write lets it go). A record's write() into
# the OS's cache takes microseconds, but append() runs under a queue's lock: with os.write, the other
# request threads took the GIL meanwhile, and the writer then waited for it with the lock held, so
# pushes with the journal ran at 0.88 × those without; keeping the GIL: 0.96 ×. The price is Redis's:
# a write() stalled by the disk (say, a frozen file system) stalls the whole worker, /health and reads
# included, not one thread (fsync never runs here); past gunicorn's timeout (30 s) the master kills the
# worker, which starts again from the snapshot and journal: nothing answered is lost.
_libc = ctypes.PyDLL(None, use_errno=True)
_libc.write.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_size_t)
_libc.write.restype = ctypes.c_ssize_t


class JournalError(Exception):
    """A journal that cannot be replayed; the message names the file and the offset."""


class JournalWriteError(Exception):
    """A record could not be written; nothing of it counts."""


def ignore_file_size_signal():
    """Make a write past RLIMIT_FSIZE fail with EFBIG instead of killing the process."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def encode(record):
    """The bytes of one record."""
    payload = pickle.dumps(record, protocol=pickle.HIGHEST_PROTOCOL)
    header = _HEADER.pack(len(payload), zlib.crc32(payload))
    return header + _HEADER_CHECK.pack(zlib.crc32(header)) + payload


def write_all(fd, data):
    """Write all of data to fd without letting go of the GIL; raises OSError (part may be written)."""
    while data:
        written = _libc.write(fd, data, len(data))
        if written > 0:
            data = data[written:]
            continue
        # A write of nothing would be tried for ever, with the GIL held: an error, as os.write's
        # callers treated a short write.
        code = ctypes.get_errno() if written < 0 else errno.EIO
        if code != errno.EINTR:
            raise OSError(code, os.strerror(code))


def journal_path(snapshot_path, generation):
    return Path(snapshot_path).with_name(f"{Path(snapshot_path).name}.journal.{generation:08d}")


def generations(snapshot_path):
    """The generations of the journal files beside snapshot_path, oldest first."""
    prefix = f"{Path(snapshot_path).name}.journal."
    found = []
    for entry in Path(snapshot_path).parent.glob(prefix + "*"):
        suffix = entry.name[len(prefix) :]
        if suffix.isdigit():
            found.append(int(suffix))
    return sorted(found)


def remove_journals_before(snapshot_path, generation):
    """Delete the journal files of generations that a durable snapshot has folded in."""
    for old in generations(snapshot_path):
        if old < generation:
            journal_path(snapshot_path, old).unlink(missing_ok=True)


def read_records(path):
    """Every record of one journal file, in order; a torn last record is dropped with a warning."""
    data = Path(path).read_bytes()
    content_end = len(data.rstrip(b"\0"))
    records, offset = [], 0
    while offset < len(data):
        end = _record_end(path, data, offset, content_end)
        if end is None:
            log.warning("%s: dropped a torn last record at offset %d", path, offset)
            break
        try:
            records.append(plain_loads(data[offset + _RECORD_START : end]))
        except Exception as exc:
            raise JournalError(f"{path}: unreadable record at offset {offset}: {exc}") from exc
        offset = end
    return records


def _record_end(path, data, offset, content_end):
    """Where the record at offset ends; None if it is torn; raises JournalError if it is damaged.

    A record that fails its checks is torn if nothing but zero bytes follows it (content_end is
    where they start): a crash cut it short, or, after a power loss, some file systems show the
    file's new length before its data. No record ends in a zero byte: a pickle ends in ".".
    """
    if len(data) - offset < _RECORD_START:
        return None
    header = data[offset : offset + _HEADER.size]
    (check,) = _HEADER_CHECK.unpack_from(data, offset + _HEADER.size)
    if zlib.crc32(header) != check:
        if content_end <= offset + _RECORD_START:
            return None
        raise JournalError(f"{path}: damaged record header at offset {offset}")
    length, crc = _HEADER.unpack(header)
    end = offset + _RECORD_START + length
    if end > len(data):
        return None
    if zlib.crc32(data[offset + _RECORD_START : end]) != crc:
        if end >= content_end:
            return None
        raise JournalError(f"{path}: damaged record at offset {offset} (checksum mismatch)")
    return end


class Journal:
    """Appends records to the current generation's file; thread-safe.

    append() is called with the lock of what the record changes held, so records are in the order
    the changes are applied; it is one write() into the OS's cache, holding the GIL (see write_all).
    With fsync=always, wait_durable() fsyncs before the reply, after the locks are released, so
    concurrent callers share one fsync; with everysec the checker thread fsyncs once a second, off
    the request path; with no, never.

    A new generation starts in three steps, so that nothing slow runs under the caller's locks:
    open_next() opens the file before them, switch() swaps the handle under them, and retire()
    syncs and closes the previous file after them (discard() drops an opened file not switched to).
    """

    def __init__(self, snapshot_path, generation, fsync):
        self._snapshot_path = Path(snapshot_path)
        self._fsync = fsync
        self._lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._written = 0  # records appended, ever
        self._synced = 0  # records known to be on disk
        # (low, high]: records a failed fsync may have lost. The kernel may drop the pages of a failed
        # fsync, so a later fsync that succeeds does not make them durable: they never count as such.
        self._unsynced = (0, 0)
        self._stop = threading.Event()
        self._checker = threading.Thread(target=self._check_every_second, name="journal-check", daemon=True)
        self._lost = False  # the file was removed or replaced: nothing more may go into it
        # (fd, its last record's sequence) of earlier generations, switched away from but not yet
        # synced and closed
        self._retired = []
        self.failure = None
        self.generation = generation
        self._fd, self._path, self._good_size = self._open(generation)

    def _open(self, generation):
        """(fd, path, size) of generation's file, opened for appending."""
        path = journal_path(self._snapshot_path, generation)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return fd, path, os.fstat(fd).st_size

    @property
    def lost(self):
        """True once the file was removed or replaced: records are refused until switch()."""
        return self._lost

    def start(self):
        """Start the thread that checks the file every second (and fsyncs it, with everysec)."""
        self._checker.start()

    def _check_every_second(self):
        while not self._stop.wait(CHECK_EVERY_SECONDS):
            try:
                self._check_file()
                if self._fsync == "everysec":
                    self._sync(self._written)
            except JournalWriteError:
                continue  # already logged, and shown by /health; the next second tries again

    def _check_file(self):
        """Refuse further records if the file was removed or replaced (say, its directory deleted):
        they would go nowhere a restart could find them. The next snapshot starts a new file."""
        with self._lock:
            if self._lost:
                return
            try:
                same = os.path.samestat(os.stat(self._path), os.fstat(self._fd))
            except FileNotFoundError:
                same = False
            except OSError as exc:
                self._fail("check the file", exc)
            if not same:
                self._lost = True
                self._fail("write", FileNotFoundError(f"{self._path} was removed"))

    def _fail(self, what, exc):
        if self.failure is None:
            log.error(
                "journal %s: cannot %s: %s; changes are refused until it works again", self._path, what, exc
            )
        self.failure = f"journal {self._path}: cannot {what}: {exc.strerror or exc}"
        raise JournalWriteError(self.failure) from exc

    def append(self, record):
        """Write one record (encoded by the caller); returns its sequence number for wait_durable()."""
        with self._lock:
            if self._lost:
                raise JournalWriteError(self.failure)
            try:
                if self.failure is not None:
                    # A failed write may have left part of a record: cut it off before going on.
                    os.ftruncate(self._fd, self._good_size)
                write_all(self._fd, record)
            except OSError as exc:
                self._fail("write", exc)
            if self.failure is not None:
                log.info("journal: writing again")
                self.failure = None
            self._good_size += len(record)
            self._written += 1
            return self._written

    @property
    def written(self):
        """The sequence number of the last record appended (0: none yet)."""
        return self._written

    def wait_durable(self, sequence):
        """Return once record number sequence is on disk with fsync=always; at once otherwise."""
        if self._fsync == "always":
            self._sync(sequence)

    def _sync(self, sequence):
        """fsync every file holding records up to sequence, unless another caller's fsync did."""
        self._check_not_lost(sequence)
        if self._synced >= sequence:
            return
        with self._sync_lock:
            self._check_not_lost(sequence)  # a failed fsync while this caller waited
            if self._synced >= sequence:
                return  # another caller's fsync covered this record
            with self._lock:
                target, fd, retired = self._written, self._fd, list(self._retired)
            try:
                for old, _ in retired:
                    os.fsync(old)
                os.fsync(fd)
            except OSError as exc:
                self._unsynced = (self._synced, target)
                self._fail("fsync", exc)
            self._synced = target

    def _check_not_lost(self, sequence):
        """Raise JournalWriteError if record number sequence was written before a failed fsync."""
        low, high = self._unsynced
        if low < sequence <= high:
            raise JournalWriteError("journal: an fsync failed after this record was written; it may be lost")

    def open_next(self):
        """Open the next generation's file, before the caller takes its locks; returns it for switch()."""
        try:
            return self._open(self.generation + 1)
        except OSError as exc:
            with self._lock:
                self._fail("start a new journal file", exc)

    def switch(self, opened):
        """Write into opened (from open_next) from now on; the caller holds every queue lock.

        Returns the new generation. No I/O: the previous file waits for retire().
        """
        with self._lock:
            self._retired.append((self._fd, self._written))
            self._fd, self._path, self._good_size = opened
            self.generation += 1
            if self._lost:
                log.info("journal: writing again, to %s", self._path)
                self._lost, self.failure = False, None
            return self.generation

    def retire(self):
        """Sync (unless fsync=no) and close the files switched away from; after the caller's locks."""
        with self._sync_lock:
            with self._lock:
                retired, self._retired = self._retired, []
            try:
                if self._fsync != "no":
                    for fd, _ in retired:
                        os.fsync(fd)
            except OSError as exc:
                self._unsynced = (self._synced, retired[-1][1])
                self._fail("fsync", exc)
            finally:
                for fd, _ in retired:
                    os.close(fd)

    def discard(self, opened):
        """Close and remove a file from open_next() that was not switched to."""
        fd, path, _ = opened
        os.close(fd)
        path.unlink(missing_ok=True)

    def close(self):
        """Stop the fsync thread, make everything durable and close the file."""
        self._stop.set()
        if self._checker.is_alive():
            self._checker.join()
        with contextlib.suppress(JournalWriteError):  # logged by _fail; the current file still closes
            self.retire()
        with self._lock:
            if self._fsync != "no":
                try:
                    os.fsync(self._fd)
                except OSError as exc:
                    log.error("journal: final fsync failed: %s", exc)
            os.close(self._fd)
