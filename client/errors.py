"""The service's errors as exceptions, each carrying the contract's status, code and details."""


class QueueError(Exception):
    """An error answer of the service (or no answer at all: status None, code "unreachable")."""

    def __init__(self, status, code, message, details=None):
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class InvalidRequest(QueueError):
    """400: invalid_json, invalid_request or invalid_queue_name."""


class Unauthorized(QueueError):
    """401: no or wrong credentials."""


class Forbidden(QueueError):
    """403: the role may not do this."""


class QueueNotFound(QueueError):
    """404 queue_not_found."""


class QueueExists(QueueError):
    """409 queue_exists."""


class QueueFull(QueueError):
    """409 queue_full."""


class QueueInUse(QueueError):
    """409 queue_in_use."""


class ReceiptInvalid(QueueError):
    """409 receipt_invalid: the lease is unknown or expired."""


class InvalidMessage(QueueError):
    """422 invalid_message; details name the message index and field."""


class IdempotencyKeyReused(QueueError):
    """422 idempotency_key_reused: the key came before with another body."""


class TooManyRequests(QueueError):
    """429 too_many_requests: too many failed logins from this address."""


class StorageUnavailable(QueueError):
    """503 storage_unavailable: nothing was changed."""


_BY_CODE = {
    "invalid_json": InvalidRequest,
    "invalid_request": InvalidRequest,
    "invalid_queue_name": InvalidRequest,
    "unauthorized": Unauthorized,
    "forbidden": Forbidden,
    "queue_not_found": QueueNotFound,
    "queue_exists": QueueExists,
    "queue_full": QueueFull,
    "queue_in_use": QueueInUse,
    "receipt_invalid": ReceiptInvalid,
    "invalid_message": InvalidMessage,
    "idempotency_key_reused": IdempotencyKeyReused,
    "too_many_requests": TooManyRequests,
    "storage_unavailable": StorageUnavailable,
}


def error_from_response(response):
    """The exception for an error response of the service."""
    try:
        error = response.json()["error"]
        code, message, details = error["code"], error["message"], error.get("details")
    except (ValueError, KeyError, TypeError):
        code, message, details = f"http_{response.status_code}", response.text[:200], None
    return _BY_CODE.get(code, QueueError)(response.status_code, code, message, details)
