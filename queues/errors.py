"""The service's exceptions, one per API error code, and the one place that turns errors into JSON."""

import logging

from flask import g
from werkzeug.exceptions import HTTPException

from queues.responses import json_response

log = logging.getLogger(__name__)


class QueueServiceError(Exception):
    """An error the client caused or must know about; carries the API status, code and details."""

    status = 500
    code = "internal_error"

    def __init__(self, message, details=None):
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self):
        error = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


class InvalidJson(QueueServiceError):
    status, code = 400, "invalid_json"


class InvalidRequest(QueueServiceError):
    status, code = 400, "invalid_request"


class InvalidQueueName(QueueServiceError):
    status, code = 400, "invalid_queue_name"


class QueueNotFound(QueueServiceError):
    status, code = 404, "queue_not_found"

    def __init__(self, name):
        super().__init__(f"queue '{name}' does not exist")


class QueueExists(QueueServiceError):
    status, code = 409, "queue_exists"

    def __init__(self, name):
        super().__init__(f"queue '{name}' already exists")


class QueueFull(QueueServiceError):
    status, code = 409, "queue_full"

    @classmethod
    def no_room(cls, name, held, max_messages, adding):
        return cls(f"queue '{name}' holds {held} of {max_messages} messages; {adding} more do not fit")


class QueueInUse(QueueServiceError):
    status, code = 409, "queue_in_use"

    @classmethod
    def as_dead_letter_queue(cls, name, users):
        return cls(f"queue '{name}' is the dead-letter queue of {', '.join(users)}")


class ReceiptInvalid(QueueServiceError):
    status, code = 409, "receipt_invalid"

    @classmethod
    def one(cls):
        return cls("unknown or expired receipt")

    @classmethod
    def in_batch(cls, unknown):
        """For an ack of several receipts: unknown holds the indexes of those with no lease."""
        return cls(
            "unknown, expired or repeated receipt(s); nothing was acknowledged",
            [{"index": i, "path": "receipts", "problem": "unknown or expired"} for i in unknown],
        )


class BadDeadLetterQueue(InvalidRequest):
    """A create naming a dead-letter queue that cannot be one: the contract's 400 invalid_request."""

    @classmethod
    def missing(cls, name):
        return cls(f"dead_letter_queue '{name}' does not exist; create it first")

    @classmethod
    def chained(cls, name):
        return cls(f"dead_letter_queue '{name}' has a dead-letter queue of its own; chains are not allowed")


class StorageUnavailable(QueueServiceError):
    status, code = 503, "storage_unavailable"


class UnsupportedMediaType(QueueServiceError):
    status, code = 415, "unsupported_media_type"


class InvalidMessage(QueueServiceError):
    status, code = 422, "invalid_message"


class IdempotencyKeyReused(QueueServiceError):
    status, code = 422, "idempotency_key_reused"

    def __init__(self, name):
        super().__init__(
            f"this Idempotency-Key was used with a different body on queue '{name}'; nothing was added"
        )


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
    return json_response(error.to_dict(), error.status)


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
