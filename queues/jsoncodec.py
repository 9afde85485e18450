"""JSON encoding and decoding: orjson for speed, the standard library where orjson would lose data."""

import json
import re

import orjson

# orjson turns integers beyond 64 bits into floats; bodies that may hold one (a run of 19 digits)
# take the exact path. Mapping every digit to "0" and searching for nineteen of them is much faster
# than a regular expression over a large body.
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGIT_RUN = b"0" * 19
# orjson's encoder refuses values nested deeper than this; they are refused on the way in, so that
# nothing accepted fails to encode later. Only a body with more brackets than this can be too deep,
# and orjson's own encoder (in C) answers for most of those: the walk is for the ones it refuses.
MAX_DEPTH = 254
# A surrogate escape (\ud800-\udfff): the standard library decodes a lone one, which cannot be encoded.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


class JsonDecodeError(ValueError):
    """The bytes are not valid JSON."""


def _reject_constant(name):
    raise ValueError(f"{name} is not valid JSON")


def _finite_float(text):
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"number {text} is out of range")
    return value


def _check_encodable(value, check_text):
    """Raise ValueError if value nests deeper than MAX_DEPTH or (check_text) holds a lone surrogate."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                raise ValueError(f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                item = item.values()
            stack.extend((child, depth + 1) for child in item)
        elif check_text and isinstance(item, str):
            try:
                item.encode()
            except UnicodeEncodeError:
                raise ValueError("a string holds a lone surrogate escape") from None


def _orjson_encodes(value):
    try:
        orjson.dumps(value)
    except orjson.JSONEncodeError:
        return False
    return True


def loads(data):
    """Decode JSON bytes; NaN, Infinity, out-of-range numbers, lone surrogates and values nested
    deeper than MAX_DEPTH are errors, large integers are exact."""
    try:
        if _LONG_DIGIT_RUN not in data.translate(_DIGITS_TO_ZERO):
            value = orjson.loads(data)
            check_text = False  # orjson refuses lone surrogates itself
        else:
            # Decoded here, strictly: json.loads would decode bytes with "surrogatepass", letting in a
            # surrogate sent as raw bytes (no escape for the check below to find), and a UTF-8 BOM.
            value = json.loads(data.decode(), parse_constant=_reject_constant, parse_float=_finite_float)
            check_text = _SURROGATE_ESCAPE.search(data) is not None
        if check_text or (data.count(b"[") + data.count(b"{") > MAX_DEPTH and not _orjson_encodes(value)):
            _check_encodable(value, check_text)
        return value
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise JsonDecodeError(str(exc)) from exc


def dumps(value):
    """Encode compact UTF-8 JSON bytes."""
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
