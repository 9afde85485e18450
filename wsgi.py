"""The WSGI entry point for gunicorn: `gunicorn -c gunicorn.conf.py wsgi:app`."""

import sys

from app import STARTUP_ERRORS, create_app

try:
    app = create_app()
except STARTUP_ERRORS as exc:
    print(f"queue service cannot start: {exc}", file=sys.stderr)
    # gunicorn's "application failed to load" status: the master stops instead of retrying.
    sys.exit(4)
