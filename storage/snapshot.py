"""The snapshot file: the whole state as a sequence of pickles, written atomically, read safely.

Layout: one pickled header dict (every queue's settings and message count, without messages),
then each queue's messages in order as pickled lists of at most CHUNK stored messages, then a
pickled trailer {"sha256": digest of every byte before it}. Chunks keep each pickling step short,
so the writer thread never holds the GIL long enough to stall requests. The header's "checksum"
key says a trailer follows; a file from before checksums has neither and loads with a warning.
"""

import contextlib
import hashlib
import io
import logging
import os
import pickle
from pathlib import Path

log = logging.getLogger(__name__)
CHECKSUM = "sha256"

CHUNK = 10_000


class SnapshotError(Exception):
    """A snapshot that cannot be read or written; the message names the file."""


class _NoClassesUnpickler(pickle.Unpickler):
    """Unpickles plain data only: any class or function reference is refused, so nothing runs."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: snapshots hold plain data only")


def plain_loads(data):
    """Unpickle bytes that may hold plain data only (no classes, so nothing runs)."""
    return _NoClassesUnpickler(io.BytesIO(data)).load()


def _fsync_directory(directory):
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _HashingWriter:
    """A binary file wrapper that hashes what is written through it."""

    def __init__(self, out):
        self._out = out
        self.digest = hashlib.sha256()

    def write(self, data):
        self.digest.update(data)
        return self._out.write(data)


class _HashingReader:
    """A binary file wrapper that hashes what is read through it (what pickle.Unpickler needs)."""

    def __init__(self, stream):
        self._stream = stream
        self.digest = hashlib.sha256()

    def read(self, size=-1):
        data = self._stream.read(size)
        self.digest.update(data)
        return data

    def readline(self):
        data = self._stream.readline()
        self.digest.update(data)
        return data

    def readinto(self, buffer):
        count = self._stream.readinto(buffer)
        self.digest.update(memoryview(buffer)[:count])
        return count


def save_snapshot(path, state):
    """Write state (plain data: a dict with a "queues" list) to path: temp file, fsync, rename, fsync
    directory."""
    path = Path(path)
    header = dict(state, queues=[], checksum=CHECKSUM)
    for saved in state["queues"]:
        settings = {k: v for k, v in saved.items() if k != "messages"}
        header["queues"].append(dict(settings, size=len(saved["messages"])))
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as file:
            out = _HashingWriter(file)
            pickle.dump(header, out, protocol=pickle.HIGHEST_PROTOCOL)
            for saved in state["queues"]:
                messages = saved["messages"]
                for start in range(0, len(messages), CHUNK):
                    pickle.dump(messages[start : start + CHUNK], out, protocol=pickle.HIGHEST_PROTOCOL)
            pickle.dump({CHECKSUM: out.digest.hexdigest()}, file, protocol=pickle.HIGHEST_PROTOCOL)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
        _fsync_directory(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):  # the directory itself may be gone; exc is what matters
            tmp.unlink(missing_ok=True)
        raise SnapshotError(f"{path}: cannot write the snapshot: {exc.strerror or exc}") from exc


def _check_header(header, check_queue):
    if not (
        isinstance(header, dict)
        and isinstance(header.get("next_id"), int)
        and isinstance(header.get("journal_generation"), int)
        and isinstance(header.get("queues"), list)
    ):
        raise ValueError("the header is not a snapshot header")
    for settings in header["queues"]:
        if not isinstance(settings, dict) or not isinstance(settings.get("size"), int):
            raise ValueError("queue settings lack a valid 'size'")
        check_queue(settings)


def _read_messages(unpickler, size):
    messages = []
    while len(messages) < size:
        chunk = unpickler.load()
        if not isinstance(chunk, list) or not all(type(m) is bytes for m in chunk):
            raise ValueError("a message chunk is not a list of stored messages")
        messages.extend(chunk)
    if len(messages) != size:
        raise ValueError("message chunks do not add up to the queue's size")
    return messages


def load_snapshot(path, expected_version, check_queue):
    """The state saved at path, or None if there is no file; raises SnapshotError naming the file.

    check_queue(settings) raises ValueError unless one queue's settings (all but its messages) are
    what the writer saves: this module knows the file's layout, not what a queue holds.
    """
    path = Path(path)
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed by the with block below
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SnapshotError(f"{path}: cannot read the snapshot: {exc.strerror}") from exc
    with stream:
        return _read_snapshot(path, stream, expected_version, check_queue)


def _check_trailer(unpickler, hashed, header, path):
    """Compare the trailer's checksum with the bytes read; warn for a file from before checksums."""
    if header.pop("checksum", None) != CHECKSUM:
        log.warning("%s: written before snapshots had a checksum; loading it unchecked", path)
        return
    digest = hashed.digest.hexdigest()
    trailer = unpickler.load()
    if not isinstance(trailer, dict) or trailer.get(CHECKSUM) != digest:
        raise ValueError("its checksum does not match its content (the file is damaged)")


def _read_snapshot(path, stream, expected_version, check_queue):
    hashed = _HashingReader(stream)
    unpickler = _NoClassesUnpickler(hashed)
    try:
        header = unpickler.load()
        _check_header(header, check_queue)
        if header.get("version") != expected_version:
            raise ValueError(f"version {header.get('version')!r} is not {expected_version}")
        for settings in header["queues"]:
            settings["messages"] = _read_messages(unpickler, settings.pop("size"))
        _check_trailer(unpickler, hashed, header, path)
        if stream.read(1):
            raise ValueError("unexpected data after the last queue")
    except Exception as exc:
        raise refused(path, exc) from exc
    return header


def refused(path, reason):
    """The SnapshotError that stops start-up for a snapshot at path that cannot be trusted."""
    return SnapshotError(
        f"{path}: not a readable snapshot ({reason}); it was left as it is. Move it away to start "
        "empty, or restore a backup"
    )
