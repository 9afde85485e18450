"""The messages blueprint: push to and pull from a queue."""

from flask import Blueprint, current_app

from queues import idempotency, jsoncodec
from queues.auth import ANY_ROLE_WITH_ACCESS, auth
from queues.errors import InvalidRequest, SchemaChanged
from queues.responses import json_response, no_content
from queues.routes import (
    bounded_int,
    bounded_seconds,
    json_object_body,
    manager,
    manager_of_existing,
    one_or_many,
    query_int,
    query_params,
    settings,
)
from queues.schemas import check_messages

bp = Blueprint("messages", __name__)
MAX_REASON_LENGTH = 1000


@bp.post("/queues/<name>/push")
@auth.login_required(role=ANY_ROLE_WITH_ACCESS)
def push_messages(name):
    queues = manager()
    schema = queues.schema_of(name)
    key = idempotency.requested_key()
    body = json_object_body(("message", "messages"))
    limits = settings().queues
    messages, single = one_or_many(body, "message", "messages", limits.max_batch)
    once = idempotency.for_push(key, body, limits.idempotency_seconds)
    bodies = [jsoncodec.dumps(m) for m in messages]
    try:
        ids, size, replayed = _checked_push(queues, name, schema, messages, bodies, once)
    except SchemaChanged:
        # The queue was made again with another schema since schema_of (by another worker, or
        # within the Redis backend's METADATA_SECONDS): check against the new one, once.
        ids, size, replayed = _checked_push(queues, name, queues.schema_of(name), messages, bodies, once)
    headers = {idempotency.REPLAYED_HEADER: "true"} if replayed else None
    if single:
        return json_response({"id": ids[0], "queue": name, "size": size}, 201, headers)
    return json_response({"ids": ids, "queue": name, "size": size}, 201, headers)


@bp.post("/queues/<name>/pull")
@auth.login_required(role=ANY_ROLE_WITH_ACCESS)
def pull_messages(name):
    queues = manager_of_existing(name)
    limits = settings().queues
    params = query_params(("max", "wait", "lease"))
    count = query_int("max", params["max"], 1, limits.max_batch) if "max" in params else 1
    wait = bounded_seconds("wait", params["wait"], limits.max_wait_seconds) if "wait" in params else 0.0
    lease = query_int("lease", params["lease"], 1, limits.max_lease_seconds) if "lease" in params else None
    pulled = queues.pull(name, count, wait, lease)
    if not pulled:
        return no_content()
    if "max" not in params:
        return json_response(pulled[0])
    return json_response(b'{"messages":[' + b",".join(pulled) + b"]}")


def _checked_push(queues, name, schema, messages, bodies, once):
    check_messages(messages, current_app.extensions["queues.schemas"].get(schema))
    return queues.push(name, bodies, once, schema)


def _receipt(value):
    if not isinstance(value, str) or not value:
        raise InvalidRequest("a receipt must be a non-empty string")
    return value


@bp.post("/queues/<name>/ack")
@auth.login_required(role=ANY_ROLE_WITH_ACCESS)
def ack_messages(name):
    queues = manager_of_existing(name)
    body = json_object_body(("receipt", "receipts"))
    receipts, _ = one_or_many(body, "receipt", "receipts", settings().queues.max_batch)
    receipts = [_receipt(receipt) for receipt in receipts]
    return json_response({"acked": queues.ack(name, receipts)})


@bp.post("/queues/<name>/nack")
@auth.login_required(role=ANY_ROLE_WITH_ACCESS)
def nack_message(name):
    queues = manager_of_existing(name)
    body = json_object_body(("receipt", "delay", "reason"))
    receipt = _receipt(body.get("receipt"))
    delay = bounded_int("delay", body.get("delay", 0), 0, settings().queues.max_lease_seconds)
    reason = body.get("reason")
    if reason is not None and not (isinstance(reason, str) and len(reason) <= MAX_REASON_LENGTH):
        raise InvalidRequest(f"reason must be a string of at most {MAX_REASON_LENGTH} characters")
    return json_response(queues.nack(name, receipt, delay, reason))


@bp.post("/queues/<name>/extend")
@auth.login_required(role=ANY_ROLE_WITH_ACCESS)
def extend_lease(name):
    queues = manager_of_existing(name)
    body = json_object_body(("receipt", "lease"))
    receipt = _receipt(body.get("receipt"))
    lease = bounded_int("lease", body.get("lease"), 1, settings().queues.max_lease_seconds)
    return json_response(queues.extend(name, receipt, lease))
