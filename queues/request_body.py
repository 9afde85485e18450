"""A request body whose framing breaks while the app reads it is a 400, not a 500.

gunicorn reads a chunked body as the app asks for it, and raises its own parse errors from the
read (a chunk longer than its size, a forbidden trailer field, a malformed extension); here they
become werkzeug's BadRequest, which the error handlers answer like any other 400.
"""

from gunicorn.http.errors import ParseException
from werkzeug.exceptions import BadRequest


class _Input:
    """wsgi.input, with gunicorn's parse errors raised as BadRequest."""

    def __init__(self, stream):
        self._stream = stream

    def _call(self, method, *args):
        try:
            return getattr(self._stream, method)(*args)
        except ParseException as exc:
            raise BadRequest(f"the request body is malformed: {exc}") from exc

    def read(self, *args):
        return self._call("read", *args)

    def readline(self, *args):
        return self._call("readline", *args)

    def readlines(self, *args):
        return self._call("readlines", *args)

    def __iter__(self):
        return self

    def __next__(self):
        return self._call("__next__")


def init_app(app):
    """Wrap app's WSGI callable so that every request's wsgi.input is an _Input."""
    wsgi_app = app.wsgi_app

    def with_checked_input(environ, start_response):
        if "wsgi.input" in environ:
            environ["wsgi.input"] = _Input(environ["wsgi.input"])
        return wsgi_app(environ, start_response)

    app.wsgi_app = with_checked_input
