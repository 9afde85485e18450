"""Checks of a restored state's content, before it is trusted: settings the API could never have
made, dead-letter queues that do not exist, messages that are not JSON."""

from queues import jsoncodec
from queues.backend import check_queue_name
from queues.errors import InvalidQueueName
from queues.message import HEADER_SIZE
from queues.schemas import SCHEMA_NAMES
from storage.snapshot import refused


class StateContentError(ValueError):
    """A state whose content does not hold; the message says which queue and what."""


def _check_settings(queue, names, schema_names):
    name = queue["name"]
    if queue["max_messages"] < 1:
        raise StateContentError(f"queue {name!r} has max_messages {queue['max_messages']}, below 1")
    if queue["schema"] is not None and queue["schema"] not in schema_names:
        raise StateContentError(f"queue {name!r} names an unknown schema {queue['schema']!r}")
    max_deliveries, dead_letter_queue = queue["max_deliveries"], queue["dead_letter_queue"]
    if (max_deliveries is None) != (dead_letter_queue is None):
        raise StateContentError(f"queue {name!r} has only one of max_deliveries and dead_letter_queue")
    if max_deliveries is not None and max_deliveries < 1:
        raise StateContentError(f"queue {name!r} has max_deliveries {max_deliveries}, below 1")
    if dead_letter_queue is not None:
        if dead_letter_queue not in names or dead_letter_queue == name:
            raise StateContentError(
                f"queue {name!r} has a dead-letter queue {dead_letter_queue!r} that does not exist"
            )
        if names[dead_letter_queue]["dead_letter_queue"] is not None:
            raise StateContentError(f"queue {name!r} has a dead-letter queue that has one of its own")
    for key in ("pushed_total", "pulled_total", "acked_total", "dead_lettered_total"):
        if queue[key] < 0:
            raise StateContentError(f"queue {name!r} has a negative {key}")


def _check_messages(queue):
    stored = [*queue["messages"], *(lease[1] for lease in queue["leases"])]
    for index, message in enumerate(stored):
        try:
            if len(message) <= HEADER_SIZE:
                raise jsoncodec.JsonDecodeError("too short")
            jsoncodec.loads(message[HEADER_SIZE:])
        except jsoncodec.JsonDecodeError as exc:
            raise StateContentError(f"queue {queue['name']!r}: message {index} is not JSON ({exc})") from None


def check_state(state, schema_names):
    """Raise StateContentError unless every queue of state (a snapshot's) could have been made by the API."""
    names = {}
    for queue in state["queues"]:
        try:
            check_queue_name(queue["name"])
        except InvalidQueueName as exc:
            raise StateContentError(str(exc)) from None
        if queue["name"] in names:
            raise StateContentError(f"queue {queue['name']!r} appears twice")
        names[queue["name"]] = queue
    for queue in state["queues"]:
        _check_settings(queue, names, schema_names)
        _check_messages(queue)


def check_snapshot(path, state):
    """Raise SnapshotError naming path unless the state loaded from it passes check_state."""
    try:
        check_state(state, SCHEMA_NAMES)
    except StateContentError as exc:
        raise refused(path, exc) from exc
