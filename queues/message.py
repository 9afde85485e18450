"""The stored form of a message: one bytes object holding its id, enqueue time and JSON body.

A queued message is kept as a single bytes object rather than a dict tree so that memory per
message and snapshot time follow the message's size, and pulling it re-encodes nothing.
"""

import struct
import time
from functools import lru_cache

from queues import jsoncodec

_HEADER = struct.Struct("<Qd")
HEADER_SIZE = _HEADER.size


def pack(message_id, enqueued_at, body):
    """The stored form of body (JSON bytes) with its integer id and enqueue time (epoch seconds)."""
    return _HEADER.pack(message_id, enqueued_at) + body


def message_id(stored):
    """The integer id of a stored message."""
    return _HEADER.unpack_from(stored)[0]


def enqueued_at(stored):
    """When a stored message was pushed (epoch seconds)."""
    return _HEADER.unpack_from(stored)[1]


def format_id(number):
    """The id as the API shows it: 16 lowercase hex digits."""
    return "%016x" % number


@lru_cache(maxsize=4096)
def _iso_second(second):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))


def iso_timestamp(epoch_seconds):
    """ISO 8601 UTC with milliseconds, e.g. 2026-11-28T19:30:15.123Z."""
    millis = int(epoch_seconds * 1000)
    return "%s.%03dZ" % (_iso_second(millis // 1000), millis % 1000)


@lru_cache(maxsize=4096)
def _iso_bytes(epoch_seconds):
    # A batch's messages share one enqueue time, so a pull of many formats few timestamps.
    return iso_timestamp(epoch_seconds).encode()


def render(stored, extra=b""):
    """The pulled form of a stored message as JSON bytes: {"id", "enqueued_at", "message"}.

    extra, if given, is more members (starting with a comma) to add to the object.
    """
    number, enqueued_at = _HEADER.unpack_from(stored)
    # One formatting of a copied slice: about a quarter faster than joining parts around a memoryview.
    return b'{"id":"%016x","enqueued_at":"%b","message":%b%b}' % (
        number,
        _iso_bytes(enqueued_at),
        stored[HEADER_SIZE:],
        extra,
    )


def note_members(note):
    """The members a message's note adds to its JSON form (each starting with a comma), or b"".

    A note is what a queue keeps beside a message: {"last_nack_reason": text, "dead_letter":
    {"source_queue", "deliveries", "dead_lettered_at" (epoch seconds), "reason"}}, either optional.
    """
    if not note:
        return b""
    members = []
    dead = note.get("dead_letter")
    if dead is not None:
        shown = {
            "source_queue": dead["source_queue"],
            "deliveries": dead["deliveries"],
            "dead_lettered_at": iso_timestamp(dead["dead_lettered_at"]),
            "reason": dead["reason"],
        }
        members.append(b',"dead_letter":' + jsoncodec.dumps(shown))
    if note.get("last_nack_reason") is not None:
        members.append(b',"last_nack_reason":' + jsoncodec.dumps(note["last_nack_reason"]))
    return b"".join(members)


def browsed(stored, deliveries, note, lease_expires_at=None):
    """The form browse shows: the pulled form with deliveries, the note and (if leased) the expiry."""
    extra = b',"deliveries":%d' % deliveries + note_members(note)
    if lease_expires_at is not None:
        extra += b',"lease_expires_at":"%s"' % iso_timestamp(lease_expires_at).encode()
    return render(stored, extra)
