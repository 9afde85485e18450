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


@pytest.mark.parametrize("exact_path", [False, True], ids=["orjson", "standard library"])
@pytest.mark.parametrize("depth", [255, 1000, 1100, 5000])
def test_values_nested_deeper_than_the_encoder_allows_are_refused(depth, exact_path):
    number = b"12345678901234567890" if exact_path else b"1"
    with pytest.raises(jsoncodec.JsonDecodeError):
        jsoncodec.loads(b"[" * depth + number + b"]" * depth)


@pytest.mark.parametrize("exact_path", [False, True], ids=["orjson", "standard library"])
def test_values_as_deep_as_the_encoder_allows_round_trip(exact_path):
    number = b"12345678901234567890" if exact_path else b"1"
    value = jsoncodec.loads(b"[" * jsoncodec.MAX_DEPTH + number + b"]" * jsoncodec.MAX_DEPTH)
    assert jsoncodec.loads(jsoncodec.dumps(value)) == value


@pytest.mark.parametrize(
    "text",
    [b'"\\ud800"', b'["\\udfff", 1234567890123456789]', b'{"\\uDBFF": 12345678901234567890}'],
)
def test_lone_surrogate_escapes_are_refused_on_both_paths(text):
    with pytest.raises(jsoncodec.JsonDecodeError):
        jsoncodec.loads(text)


def test_a_surrogate_pair_is_one_character_on_both_paths():
    assert jsoncodec.loads(b'["\\ud83d\\ude00", 12345678901234567890]') == [
        "\U0001f600",
        12345678901234567890,
    ]
    assert jsoncodec.loads(b'"\\ud83d\\ude00"') == "\U0001f600"


@pytest.mark.parametrize("exact_path", [False, True], ids=["orjson", "standard library"])
@pytest.mark.parametrize("brackets", [1, 300], ids=["few brackets", "many brackets"])
def test_a_surrogate_sent_as_raw_utf8_bytes_is_refused_on_both_paths(exact_path, brackets):
    # \xed\xa0\x80 is U+D800 encoded as if it were a character: not UTF-8, and no escape to find.
    number = b"12345678901234567890" if exact_path else b"1"
    others = b",".join([b"{}"] * brackets)
    with pytest.raises(jsoncodec.JsonDecodeError):
        jsoncodec.loads(b'{"messages": [' + others + b', {"s": "\xed\xa0\x80", "n": ' + number + b"}]}")


@pytest.mark.parametrize("exact_path", [False, True], ids=["orjson", "standard library"])
def test_a_wide_body_is_kept_and_one_value_too_deep_among_many_is_refused(exact_path):
    # More brackets than MAX_DEPTH: orjson's encoder answers, or (an integer beyond 64 bits, which it
    # refuses) the walk does.
    number = b"12345678901234567890" if exact_path else b"1"
    wide = b",".join([b'{"n": [' + number + b"]}"] * 300)
    assert jsoncodec.loads(b'{"messages": [' + wide + b"]}") == {"messages": [{"n": [int(number)]}] * 300}

    def body(levels):  # the object and its list are two levels more
        return b'{"messages": [' + wide + b", " + b"[" * levels + number + b"]" * levels + b"]}"

    assert len(jsoncodec.loads(body(jsoncodec.MAX_DEPTH - 2))["messages"]) == 301
    with pytest.raises(jsoncodec.JsonDecodeError):
        jsoncodec.loads(body(jsoncodec.MAX_DEPTH - 1))
