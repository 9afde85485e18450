"""The service's exceptions, one per API error code; queues.error_handlers turns them into JSON.

No Flask here: the backends raise these and are used without a web framework.
"""


class QueueServiceError(Exception):
    """An error the client caused or must know about; carries the API status, code and details."""

    status = 500
    code = "internal_error"
    headers = None  # extra response headers, e.g. Retry-After

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


class CrossOrigin(QueueServiceError):
    status, code = 403, "cross_origin"

    def __init__(self):
        super().__init__("cross-site request refused: its Origin is not this service's")


class TooManyRequests(QueueServiceError):
    status, code = 429, "too_many_requests"

    def __init__(self, message, retry_after):
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class StorageUnavailable(QueueServiceError):
    status, code = 503, "storage_unavailable"


class SchemaChanged(StorageUnavailable):
    """The queue's schema is no longer the one a push checked its bodies against: the queue was
    deleted and made again since schema_of. The push route checks again once; a second time, 503."""

    def __init__(self, name):
        super().__init__(f"queue {name!r} was made again while this push was checked; try again")


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
