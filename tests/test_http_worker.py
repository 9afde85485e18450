"""The worker's RequestReader: when the bytes received so far are a request a thread can serve."""

from queues.http_worker import MAX_HEAD_BYTES, RequestReader

LIMIT = 1000
HEAD = b"POST /queues HTTP/1.1\r\nHost: x\r\n"


def fed(*pieces, limit=LIMIT):
    """The reader after pieces, and whether each piece left it ready."""
    reader = RequestReader(limit)
    return reader, [reader.feed(piece) for piece in pieces]


def test_a_chunked_body_is_whole_only_once_the_trailers_after_the_last_chunk_end():
    _, ready = fed(
        HEAD + b"Transfer-Encoding: chunked\r\n\r\n", b"3;ext=1\r\nabc\r\n", b"0\r\n", b"X-T: 1\r\n", b"\r\n"
    )
    assert ready == [False, False, False, False, True]


def test_chunk_data_that_looks_like_a_last_chunk_is_not_the_end():
    _, ready = fed(HEAD + b"Transfer-Encoding: chunked\r\n\r\n20\r\nab\r\n0\r\n\r\nxx")
    assert ready == [False]


def test_broken_chunk_framing_goes_to_a_thread_at_once_for_gunicorn_to_refuse():
    for body in (b"zz\r\n", b"-5\r\n", b"3\r\nabcde"):
        assert fed(HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + body)[1] == [True], body


def test_a_content_length_list_or_leading_zeros_waits_for_the_longest_body():
    for value in (b"10, 10", b"0000000000000000000000010", b"3, 10"):
        _, ready = fed(HEAD + b"Content-Length: " + value + b"\r\n\r\n", b"x" * 9, b"x")
        assert ready == [False, False, True], value


def test_a_content_length_no_parser_accepts_goes_to_a_thread_at_once_for_gunicorn_to_refuse():
    # Waiting for a body it names would leave the client unanswered until the read deadline.
    for value in (b"-1", b"+5", b"1e3", b"0x10", b"5;"):
        assert fed(HEAD + b"Content-Length: " + value + b"\r\n\r\n")[1] == [True], value


def test_a_body_declared_beyond_the_limit_goes_to_a_thread_once_the_limit_has_come():
    _, ready = fed(HEAD + b"Content-Length: 99999999999999999999999\r\n\r\n", b"x" * (LIMIT - 1), b"x")
    assert ready == [False, False, True]


def test_expect_100_continue_is_due_once_and_left_out_of_what_the_thread_reads():
    reader, ready = fed(HEAD + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert (ready, reader.continue_due(), reader.continue_due()) == ([False], True, False)
    assert reader.feed(b"{}")
    assert reader.request() == HEAD + b"Content-Length: 2\r\n\r\n{}"


def test_a_head_over_the_limit_is_too_long_and_never_ready():
    reader, ready = fed(HEAD + b"X-Pad: " + b"p" * MAX_HEAD_BYTES)
    assert (ready, reader.head_too_long) == ([False], True)
