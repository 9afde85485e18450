"""QueueInfo, a queue's public state: its fields and their order, in one place.

Both backends build it with queue_info(); the Redis script returns the STORED fields in this order
(redis_manager fills its field list in from here); the memory backend's snapshots are checked
against STORED_TYPES; the metrics export the TOTALS; a test holds the OpenAPI document to FIELDS.
"""

from queues.message import iso_timestamp

# The fields a backend keeps for a queue, in QueueInfo's order (created_at as epoch seconds).
STORED_TYPES = {
    "max_messages": int,
    "schema": (str, type(None)),
    "max_deliveries": (int, type(None)),
    "dead_letter_queue": (str, type(None)),
    "created_at": float,
    "pushed_total": int,
    "pulled_total": int,
    "acked_total": int,
    "dead_lettered_total": int,
}
STORED = tuple(STORED_TYPES)
TOTALS = ("pushed_total", "pulled_total", "acked_total", "dead_lettered_total")
# The freshness of the queue, known at the moment: the head's enqueue time, long polls waiting.
FRESHNESS = ("oldest_enqueued_at", "waiting_pulls")
# Every field, in the order the API shows them: the name, the counts of messages held, STORED, then
# FRESHNESS.
FIELDS = ("name", "size", "in_flight", *STORED, *FRESHNESS)


def queue_info(name, size, in_flight, stored, oldest_enqueued_at, waiting_pulls):
    """The QueueInfo of a queue; stored maps every STORED field to its value; oldest_enqueued_at is
    the head message's enqueue time (epoch seconds), or None when nothing is available."""
    info = {"name": name, "size": size, "in_flight": in_flight}
    for field in STORED:
        info[field] = stored[field]
    info["created_at"] = iso_timestamp(stored["created_at"])
    info["oldest_enqueued_at"] = None if oldest_enqueued_at is None else iso_timestamp(oldest_enqueued_at)
    info["waiting_pulls"] = waiting_pulls
    return info
