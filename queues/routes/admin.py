"""The admin blueprint: create, list, inspect and delete queues, plus the public health and API document."""

from flask import Blueprint, Response, current_app

from queues import request_log
from queues.auth import ADMIN, ANY_ROLE_WITH_ACCESS, auth
from queues.backend import check_queue_name
from queues.errors import InvalidRequest, StorageUnavailable
from queues.responses import json_response
from queues.routes import bounded_int, json_object_body, manager, settings
from queues.schemas import SCHEMA_NAMES

bp = Blueprint("admin", __name__)
CREATE_FIELDS = ("name", "max_messages", "schema", "max_deliveries", "dead_letter_queue")
MAX_DELIVERIES = 1000


@bp.get("/health")
def get_health():
    failing, details = current_app.extensions["queues.backend"].health()
    log_failing, details["request_log"] = request_log.health(current_app.extensions["queues.request_log"])
    failing = failing or log_failing
    try:
        count = manager().count()
    except StorageUnavailable:
        count = None  # the rest of the answer says why
    return json_response(
        {"status": "degraded" if failing else "ok", "queues": count, **details}, 503 if failing else 200
    )


@bp.get("/openapi.yaml")
def get_openapi():
    return Response(current_app.extensions["queues.openapi"], mimetype="application/yaml")


@bp.get("/queues")
@auth.login_required(role=ANY_ROLE_WITH_ACCESS)
def list_queues():
    return json_response({"queues": manager().list()})


@bp.post("/queues")
@auth.login_required(role=ADMIN)
def create_queue():
    body = json_object_body(CREATE_FIELDS)
    name = body.get("name")
    if not isinstance(name, str):
        raise InvalidRequest("name is required and must be a string")
    check_queue_name(name)
    ceiling = settings().queues.max_messages
    max_messages = bounded_int("max_messages", body.get("max_messages", ceiling), 1, ceiling)
    schema = body.get("schema")
    if schema is not None and schema not in SCHEMA_NAMES:
        raise InvalidRequest(f"schema must be one of {', '.join(SCHEMA_NAMES)}, or null")
    max_deliveries, dead_letter_queue = body.get("max_deliveries"), body.get("dead_letter_queue")
    if (max_deliveries is None) != (dead_letter_queue is None):
        # Without a dead-letter queue, a message out of deliveries would have to be dropped.
        raise InvalidRequest("max_deliveries and dead_letter_queue go together: give both or neither")
    if max_deliveries is not None:
        bounded_int("max_deliveries", max_deliveries, 1, MAX_DELIVERIES)
        if not isinstance(dead_letter_queue, str):
            raise InvalidRequest("dead_letter_queue must be the name of an existing queue")
        check_queue_name(dead_letter_queue)
    info = manager().create(name, max_messages, schema, max_deliveries, dead_letter_queue)
    return json_response(info, 201, {"Location": f"/queues/{name}"})


@bp.get("/queues/<name>")
@auth.login_required(role=ANY_ROLE_WITH_ACCESS)
def get_queue(name):
    return json_response(manager().info(name))


@bp.delete("/queues/<name>")
@auth.login_required(role=ADMIN)
def delete_queue(name):
    return json_response({"name": name, "deleted_messages": manager().delete(name)})
