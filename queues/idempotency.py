"""Idempotent push: the Idempotency-Key header and the digest that tells "the same body"."""

import hashlib
import json
import re

import orjson
from flask import request

from queues.backend import Idempotency
from queues.errors import InvalidRequest

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
_KEY = re.compile(r"[\x21-\x7e]{1,255}")  # visible ASCII


def requested_key():
    """The request's Idempotency-Key, or None; raises InvalidRequest for a malformed one."""
    key = request.headers.get(HEADER)
    if key is not None and _KEY.fullmatch(key) is None:
        raise InvalidRequest(f"{HEADER} must be 1 to 255 visible ASCII characters")
    return key


def digest(body):
    """A digest of a JSON value that ignores key order and spacing (the contract's "same body")."""
    try:
        canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:  # integers beyond 64 bits, which orjson cannot encode
        canonical = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()
    return hashlib.sha256(canonical).hexdigest()


def for_push(key, body, seconds):
    """The backend's Idempotency for a push of body under key (None: no key sent)."""
    return None if key is None else Idempotency(key, digest(body), seconds)
