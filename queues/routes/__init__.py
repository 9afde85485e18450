"""The HTTP routes, as two blueprints, and the request parsing they share."""

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge

from queues import jsoncodec
from queues.backend import QueueBackend
from queues.errors import InvalidJson, InvalidRequest, UnsupportedMediaType
from queues.responses import JSON_MIMETYPE


def manager() -> QueueBackend:
    """The app's queue backend (memory or Redis)."""
    return current_app.extensions["queues.backend"].queues


def manager_of_existing(name) -> QueueBackend:
    """The backend, once it has said queue name exists (QueueNotFound, a 404, otherwise): the
    contract checks existence before the body."""
    queues = manager()
    queues.require(name)
    return queues


def settings():
    """The app's Config."""
    return current_app.extensions["queues.config"]


def json_object_body(allowed_keys):
    """The request body as a dict with only allowed_keys; raises 415, 413 or 400 otherwise."""
    if request.mimetype != JSON_MIMETYPE:
        raise UnsupportedMediaType(f"the body must be {JSON_MIMETYPE}, not '{request.mimetype or 'none'}'")
    try:
        body = jsoncodec.loads(_body_within_limit())
    except jsoncodec.JsonDecodeError as exc:
        raise InvalidJson(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    unknown = sorted(set(body) - set(allowed_keys))
    if unknown:
        raise InvalidRequest(f"unknown field(s) {', '.join(unknown)}; allowed: {', '.join(allowed_keys)}")
    return body


def _body_within_limit():
    """The request body; raises 413 if it is over MAX_CONTENT_LENGTH.

    werkzeug refuses a declared Content-Length over the limit before reading, but cuts a chunked
    body at the limit without a word; one more byte from the server's stream tells which it was.
    """
    data = request.get_data(cache=True)
    limit = current_app.config["MAX_CONTENT_LENGTH"]
    if request.content_length is None and len(data) >= limit and request.environ["wsgi.input"].read(1):
        raise RequestEntityTooLarge()
    return data


def one_or_many(body, one, many, limit):
    """The items of body[one] (one item) or body[many] (a non-empty list of at most limit), and
    whether it was one; raises InvalidRequest unless exactly one of the two is there."""
    if (one in body) == (many in body):
        raise InvalidRequest(f"the body needs exactly one of '{one}' or '{many}'")
    if one in body:
        return [body[one]], True
    items = body[many]
    if not isinstance(items, list) or not 0 < len(items) <= limit:
        raise InvalidRequest(f"'{many}' must be a list of 1 to {limit} items")
    return items, False


def query_params(allowed):
    """The query string as a dict; raises InvalidRequest for a parameter not in allowed or repeated."""
    params = {}
    for key, values in request.args.lists():
        if key not in allowed:
            raise InvalidRequest(f"unknown query parameter {key!r}; allowed: {', '.join(allowed)}")
        if len(values) > 1:
            raise InvalidRequest(f"query parameter {key!r} is given more than once")
        params[key] = values[0]
    return params


def bounded_int(name, value, low, high):
    """value, a JSON integer (not a boolean), if it is from low to high; raises InvalidRequest."""
    if type(value) is not int or not low <= value <= high:
        raise InvalidRequest(f"{name} must be an integer from {low} to {high}")
    return value


def query_int(name, text, low, high):
    """A query parameter as an int from low to high; raises InvalidRequest."""
    value = int(text) if text.isascii() and text.isdigit() else None
    return bounded_int(name, value, low, high)


def bounded_seconds(name, text, high):
    """text as a number of seconds from 0 to high; raises InvalidRequest."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= high:
        raise InvalidRequest(f"{name} must be a number of seconds from 0 to {high:g}")
    return value
