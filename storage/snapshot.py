"""The snapshot file: the whole state as a sequence of pickles, written atomically, read safely.

Layout: one pickled header dict (every queue's settings and message count, without messages),
then each queue's messages in order as pickled lists of at most CHUNK stored messages. Chunks keep
each pickling step short, so the writer thread never holds the GIL long enough to stall requests.
"""

import contextlib
import io
import os
import pickle
from pathlib import Path

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


def save_snapshot(path, state):
    """Write state (plain data: a dict with a "queues" list) to path: temp file, fsync, rename, fsync
    directory."""
    path = Path(path)
    header = dict(state, queues=[])
    for saved in state["queues"]:
        settings = {k: v for k, v in saved.items() if k != "messages"}
        header["queues"].append(dict(settings, size=len(saved["messages"])))
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as out:
            pickle.dump(header, out, protocol=pickle.HIGHEST_PROTOCOL)
            for saved in state["queues"]:
                messages = saved["messages"]
                for start in range(0, len(messages), CHUNK):
                    pickle.dump(messages[start : start + CHUNK], out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()
            os.fsync(out.fileno())
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


def _read_snapshot(path, stream, expected_version, check_queue):
    unpickler = _NoClassesUnpickler(stream)
    try:
        header = unpickler.load()
        _check_header(header, check_queue)
        if header.get("version") != expected_version:
            raise ValueError(f"version {header.get('version')!r} is not {expected_version}")
        for settings in header["queues"]:
            settings["messages"] = _read_messages(unpickler, settings.pop("size"))
        if stream.read(1):
            raise ValueError("unexpected data after the last queue")
    except Exception as exc:
        raise SnapshotError(
            f"{path}: not a readable snapshot ({exc}); it was left as it is. Move it away to start "
            "empty, or restore a backup"
        ) from exc
    return header
