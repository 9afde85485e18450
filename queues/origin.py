"""Cross-site refusal: a browser sends stored Basic credentials with any page's form posts.

A state-changing request (POST, DELETE) whose `Origin` is not the origin it was sent to, or whose
`Sec-Fetch-Site` says `cross-site`, is refused before authentication. Requests without these
headers (curl, scripts, the Python client) are unaffected.
"""

from urllib.parse import urlsplit

from flask import request

from queues.errors import CrossOrigin

STATE_CHANGING = frozenset({"POST", "DELETE"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def _origin(scheme, netloc):
    """(scheme, host, port) with the scheme's default port filled in; None if it cannot be parsed."""
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        return None
    return parts.scheme, parts.hostname, port


def _named_origin(value):
    """The origin an `Origin` header names, or None for `null` and anything malformed."""
    scheme, sep, netloc = value.partition("://")
    if not sep or not netloc or "/" in netloc:
        return None
    return _origin(scheme.lower(), netloc)


def refuse_cross_site():
    """before_request hook: raise CrossOrigin for a cross-site POST or DELETE."""
    if request.method not in STATE_CHANGING or request.routing_exception is not None:
        return  # routing errors (404, 405) come first
    environ = request.environ
    if environ.get("HTTP_SEC_FETCH_SITE", "").strip().lower() == "cross-site":
        raise CrossOrigin()
    origin = environ.get("HTTP_ORIGIN")
    if origin is None:
        return
    # The scheme is the forwarded one behind trusted proxies (ProxyFix), the Host as the client sent it.
    own = _origin(request.scheme, environ.get("HTTP_HOST") or environ.get("SERVER_NAME", ""))
    named = _named_origin(origin.strip())
    if named is None or own is None or named != own:
        raise CrossOrigin()


def init_app(app):
    """Refuse cross-site state-changing requests to app."""
    app.before_request(refuse_cross_site)
