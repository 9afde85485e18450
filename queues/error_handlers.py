"""The one place that turns errors into the contract's JSON: the service's own (queues.errors),
werkzeug's bare statuses, and anything unexpected."""

import logging

from flask import g
from werkzeug.exceptions import HTTPException

from queues.errors import QueueServiceError
from queues.responses import json_response

log = logging.getLogger(__name__)

# Errors raised by werkzeug (routing, body size) or flask-httpauth arrive as a bare status.
_CODES_BY_STATUS = {
    400: "invalid_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
_MESSAGES_BY_STATUS = {
    401: "valid credentials are required",
    403: "your role may not do this",
    404: "no such route",
    405: "method not allowed on this route",
}
AUTH_CHALLENGE = 'Basic realm="queues"'


def error_response(status, message, headers=None):
    """The contract's JSON error for a bare HTTP status (used by auth and werkzeug errors)."""
    code = _CODES_BY_STATUS.get(status, "invalid_request" if status < 500 else "internal_error")
    g.error_code = code  # counted by queues.metrics, without reading the body back
    body = {"error": {"code": code, "message": _MESSAGES_BY_STATUS.get(status, message)}}
    response = json_response(body, status)
    if status == 401:
        response.headers["WWW-Authenticate"] = AUTH_CHALLENGE
    for name, value in headers or ():
        if name.lower() == "allow":
            response.headers[name] = value
    return response


def _handle_service_error(error):
    g.error_code = error.code
    return json_response(error.to_dict(), error.status, error.headers)


def _handle_http_exception(error):
    return error_response(error.code, error.description, error.get_headers())


def _handle_unexpected(error):
    log.exception("unhandled error in request %s", g.get("request_id", "-"))
    g.error_code = "internal_error"
    return json_response(
        {"error": {"code": "internal_error", "message": "internal error; see the server log"}}, 500
    )


def register_error_handlers(app):
    """Answer every error as the contract's JSON; on the app, so routing 404/405 errors are seen."""
    app.register_error_handler(QueueServiceError, _handle_service_error)
    app.register_error_handler(HTTPException, _handle_http_exception)
    app.register_error_handler(Exception, _handle_unexpected)
