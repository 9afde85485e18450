"""`push --file`: a JSON Lines file pushed in batches, each under an idempotency key derived from its
lines, so that running the same command again after a failure pushes the rest and only replays (does
not add again) what went in.
"""

import hashlib
import json
import sys

from client.errors import QueueError

BATCH = 100


class InputError(Exception):
    """A line of the file that is not JSON."""

    def __init__(self, line, problem):
        super().__init__(f"line {line}: not JSON ({problem})")
        self.line = line


class PartialPush(Exception):
    """A push of a file that stopped at line `line` after `pushed` messages went in; `cause` is the
    QueueError or InputError that stopped it."""

    def __init__(self, cause, pushed, line):
        super().__init__(str(cause))
        self.cause = cause
        self.pushed = pushed
        self.line = line


def batch_key(first_line, texts):
    """The idempotency key of a batch: its position in the file and its lines' text.

    Fixing one line of a file (the bad one, say) changes the key of that line's batch only."""
    digest = hashlib.sha256(f"{first_line}\n".encode())
    for text in texts:
        digest.update(text.encode() + b"\n")
    return f"file-{digest.hexdigest()[:40]}"


def _batches(stream, size):
    """(line numbers, texts, messages) of size messages at a time (fewer at the end), blank lines
    skipped; a line that is not JSON raises InputError before its batch is handed out, so the
    batches stay the same when it is fixed."""
    numbers, texts, messages = [], [], []
    for number, line in enumerate(stream, start=1):
        text = line.strip()
        if not text:
            continue
        try:
            messages.append(json.loads(text))
        except ValueError as exc:
            raise InputError(number, f"{exc.msg}, column {exc.colno}") from None
        numbers.append(number)
        texts.append(text)
        if len(messages) == size:
            yield numbers, texts, messages
            numbers, texts, messages = [], [], []
    if messages:
        yield numbers, texts, messages


def _with_lines(details, numbers):
    """The server's details, each with the file's line number of the message it names."""
    for detail in details or []:
        index = detail.get("index") if isinstance(detail, dict) else None
        if isinstance(index, int) and 0 <= index < len(numbers):
            detail["line"] = numbers[index]
    return details


def push_file(client, queue, path, size=BATCH):
    """Push the file at path ('-': stdin); returns a summary, or raises PartialPush."""
    stream = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    ids = []
    numbers = [0]
    with stream:
        try:
            for numbers, texts, messages in _batches(stream, size):
                ids += client.push_batch(queue, messages, key=batch_key(numbers[0], texts))
                if sys.stderr.isatty():
                    print(f"\rpushed {len(ids):,}", end="", file=sys.stderr, flush=True)
        except InputError as exc:
            raise PartialPush(exc, len(ids), exc.line) from exc
        except QueueError as exc:
            exc.details = _with_lines(exc.details, numbers)
            raise PartialPush(exc, len(ids), numbers[0]) from exc
    if sys.stderr.isatty():
        print(file=sys.stderr)
    return {"queue": queue, "pushed": len(ids), "first_id": ids[0] if ids else None,
            "last_id": ids[-1] if ids else None}  # fmt: skip
