"""The messages blueprint: push to and pull from a queue."""

from flask import Blueprint, current_app

from queues import jsoncodec, message
from queues.auth import ANY_ROLE_WITH_ACCESS, auth
from queues.errors import InvalidRequest
from queues.responses import json_response, no_content
from queues.routes import bounded_seconds, json_object_body, manager, query_int, query_params, settings
from queues.schemas import check_messages

bp = Blueprint("messages", __name__)


def _messages_of(body, max_batch):
    if ("message" in body) == ("messages" in body):
        raise InvalidRequest("the body needs exactly one of 'message' or 'messages'")
    if "message" in body:
        return [body["message"]]
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty list")
    if len(messages) > max_batch:
        raise InvalidRequest(f"a batch holds at most {max_batch} messages, not {len(messages)}")
    return messages


@bp.post("/queues/<name>/push")
@auth.login_required(role=ANY_ROLE_WITH_ACCESS)
def push_messages(name):
    queues = manager()
    schema = queues.schema_of(name)
    body = json_object_body(("message", "messages"))
    messages = _messages_of(body, settings().queues.max_batch)
    check_messages(messages, current_app.extensions["queues.schemas"].get(schema))
    ids, size = queues.push(name, [jsoncodec.dumps(m) for m in messages])
    if "message" in body:
        return json_response({"id": ids[0], "queue": name, "size": size}, 201)
    return json_response({"ids": ids, "queue": name, "size": size}, 201)


@bp.post("/queues/<name>/pull")
@auth.login_required(role=ANY_ROLE_WITH_ACCESS)
def pull_messages(name):
    queues = manager()
    queues.require(name)
    limits = settings().queues
    params = query_params(("max", "wait"))
    count = query_int("max", params["max"], 1, limits.max_batch) if "max" in params else 1
    wait = bounded_seconds("wait", params["wait"], limits.max_wait_seconds) if "wait" in params else 0.0
    pulled = queues.pull(name, count, wait)
    if not pulled:
        return no_content()
    rendered = [message.render(stored) for stored in pulled]
    if "max" not in params:
        return json_response(rendered[0])
    return json_response(b'{"messages":[' + b",".join(rendered) + b"]}")
