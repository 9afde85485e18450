"""JSON responses: every body the service sends goes through json_response."""

from flask import Response

from queues import jsoncodec

JSON_MIMETYPE = "application/json"


def json_response(body, status=200, headers=None):
    """A response whose body is body encoded as JSON, or raw JSON bytes passed through."""
    data = body if isinstance(body, bytes) else jsoncodec.dumps(body)
    return Response(data, status=status, headers=headers, mimetype=JSON_MIMETYPE)


def no_content():
    """An empty 204 response, without the default text/html Content-Type."""
    response = Response(status=204)
    del response.headers["Content-Type"]
    return response
