"""JSON decoding keeps every value exactly and refuses what is not JSON."""

import pytest

from queues import jsoncodec


@pytest.mark.parametrize(
    "text",
    [
        b'{"big": 123456789012345678901234567890}',
        b'{"neg": -98765432109876543210}',
        b'{"x": 18446744073709551615}',
    ],
)
def test_integers_beyond_64_bits_survive_a_round_trip(text):
    value = jsoncodec.loads(text)
    assert jsoncodec.loads(jsoncodec.dumps(value)) == value
    assert isinstance(next(iter(value.values())), int)


@pytest.mark.parametrize(
    "text",
    [b"NaN", b'{"a": Infinity}', b"[1e400]", b'{"a": 1, "b": 123456789012345678901, "c": NaN}', b"{", b""],
)
def test_non_json_is_refused(text):
    with pytest.raises(jsoncodec.JsonDecodeError):
        jsoncodec.loads(text)


def test_out_of_range_float_is_refused_on_the_exact_path_too():
    with pytest.raises(jsoncodec.JsonDecodeError):
        jsoncodec.loads(b'{"id": 12345678901234567890, "x": 1e400}')


def test_unicode_is_kept_as_utf8():
    assert jsoncodec.dumps({"s": "☃ naïve"}) == '{"s":"☃ naïve"}'.encode()
