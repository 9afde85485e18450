"""JSON encoding and decoding: orjson for speed, the standard library where orjson would lose data."""

import json

import orjson

# orjson turns integers beyond 64 bits into floats; bodies that may hold one (a run of 19 digits)
# take the exact path. Mapping every digit to "0" and searching for nineteen of them is much faster
# than a regular expression over a large body.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGIT_RUN = b"0" * 19


class JsonDecodeError(ValueError):
    """The bytes are not valid JSON."""


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text):
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text} is out of range")
    return value


def loads(data):
    """Decode JSON bytes; NaN, Infinity and out-of-range numbers are errors, large integers are exact."""
    try:
        if _LONG_DIGIT_RUN not in data.translate(_DIGITS_TO_ZERO):
            return orjson.loads(data)
        return json.loads(data, parse_constant=_reject_constant, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise JsonDecodeError(str(exc)) from exc


def dumps(value):
    """Encode compact UTF-8 JSON bytes."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
