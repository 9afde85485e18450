"""The operators blueprint: browse a queue's messages, purge a queue, redrive dead letters."""

from flask import Blueprint, current_app

from queues import jsoncodec
from queues.auth import ADMIN, ANY_ROLE_WITH_ACCESS, auth
from queues.backend import check_queue_name
from queues.errors import InvalidRequest
from queues.responses import json_response
from queues.routes import (
    bounded_int,
    json_object_body,
    manager,
    manager_of_existing,
    query_int,
    query_params,
    settings,
)

bp = Blueprint("operators", __name__)
DEFAULT_BROWSE_LIMIT = 10
MAX_OFFSET = 1_000_000_000
STATES = ("available", "leased")


@bp.get("/queues/<name>/messages")
@auth.login_required(role=ANY_ROLE_WITH_ACCESS)
def browse_messages(name):
    queues = manager_of_existing(name)
    params = query_params(("limit", "offset", "state"))
    max_batch = settings().queues.max_batch
    default_limit = min(DEFAULT_BROWSE_LIMIT, max_batch)
    limit = query_int("limit", params["limit"], 1, max_batch) if "limit" in params else default_limit
    offset = query_int("offset", params["offset"], 0, MAX_OFFSET) if "offset" in params else 0
    state = params.get("state", "available")
    if state not in STATES:
        raise InvalidRequest(f"state must be one of {', '.join(STATES)}")
    forms, total = queues.browse(name, limit, offset, leased=state == "leased")
    return json_response(b'{"messages":[' + b",".join(forms) + b'],"total":%d}' % total)


@bp.post("/queues/<name>/purge")
@auth.login_required(role=ADMIN)
def purge_queue(name):
    return json_response({"name": name, "purged_messages": manager().purge(name)})


@bp.post("/queues/<name>/redrive")
@auth.login_required(role=ADMIN)
def redrive_messages(name):
    queues = manager_of_existing(name)
    body = json_object_body(("max", "to"))
    max_count = bounded_int("max", body["max"], 1, MAX_OFFSET) if "max" in body else None
    to = body.get("to")
    if "to" in body:
        if not isinstance(to, str):
            raise InvalidRequest("to must be the name of an existing queue")
        check_queue_name(to)
        if to == name:
            # Each message moved would come round again behind the rest: the redrive would not end.
            raise InvalidRequest("to must be another queue than the one redriven")
    return json_response(queues.redrive(name, max_count, to, _schema_check()))


def _schema_check():
    """accepts(schema name, JSON body) for redrive: whether a destination's schema takes a message."""
    validators = current_app.extensions["queues.schemas"]

    def accepts(schema, body):
        return schema is None or validators[schema].is_valid(jsoncodec.loads(body))

    return accepts
