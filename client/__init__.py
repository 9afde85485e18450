"""A Python client for the queue service: `QueueClient(base_url, user, password)`."""

from client.api import QueueClient, Retry
from client.errors import (
    Forbidden,
    IdempotencyKeyReused,
    InvalidMessage,
    InvalidRequest,
    QueueError,
    QueueExists,
    QueueFull,
    QueueInUse,
    QueueNotFound,
    ReceiptInvalid,
    StorageUnavailable,
    TooManyRequests,
    Unauthorized,
)

__all__ = [
    "Forbidden",
    "IdempotencyKeyReused",
    "InvalidMessage",
    "InvalidRequest",
    "QueueClient",
    "QueueError",
    "QueueExists",
    "QueueFull",
    "QueueInUse",
    "QueueNotFound",
    "ReceiptInvalid",
    "Retry",
    "StorageUnavailable",
    "TooManyRequests",
    "Unauthorized",
]
