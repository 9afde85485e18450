"""The application factory: wires configuration, queues, auth, errors, request log and routes."""

import logging
import sys

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from queues import auth, request_log
from queues.config import ConfigError, load_config
from queues.errors import StorageUnavailable, register_error_handlers
from queues.openapi import render_openapi
from queues.request_log import RequestLog
from queues.routes import admin, messages
from queues.schemas import SchemaFileError, load_schemas
from queues.sweeper import LeaseSweeper
from queues.users import UsersFileError
from storage.journal import JournalError, ignore_file_size_signal
from storage.recovery import recover
from storage.snapshot import SnapshotError
from storage.snapshotter import Snapshotter

# What stops start-up with a one-line message instead of a traceback.
# StorageUnavailable: the journal cannot record that the restart ended the leases.
STARTUP_ERRORS = (
    ConfigError,
    SnapshotError,
    JournalError,
    SchemaFileError,
    UsersFileError,
    StorageUnavailable,
    OSError,
)
_STDERR_HANDLER = "queues-stderr"


def _configure_app_log(level):
    """Send the service's own log (not the request log) to stderr at level."""
    for name in ("queues", "storage"):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        if not any(h.get_name() == _STDERR_HANDLER for h in logger.handlers):
            handler = logging.StreamHandler(sys.stderr)
            handler.set_name(_STDERR_HANDLER)
            handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            logger.addHandler(handler)


def create_app(config=None):
    """Build the app from config (default: load_config()); raises one of STARTUP_ERRORS."""
    config = config or load_config()
    _configure_app_log(config.logging.level)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.queues.max_request_bytes
    app.extensions["queues.config"] = config
    # Files that can stop start-up are read before the state is recovered and a journal opened.
    app.extensions["queues.schemas"] = load_schemas()
    app.extensions["queues.openapi"] = render_openapi(config.queues)
    auth.init_app(app, config.auth.users_file)

    config.persistence.path.parent.mkdir(parents=True, exist_ok=True)
    ignore_file_size_signal()
    manager, journal = recover(config.persistence, config.queues.max_waiting_pulls)
    app.extensions["queues.manager"] = manager
    app.extensions["queues.journal"] = journal
    register_error_handlers(app)
    request_log.init_app(app, RequestLog(config.logging.file, config.logging.max_body_bytes))
    app.register_blueprint(admin.bp)
    app.register_blueprint(messages.bp)
    if config.server.trusted_proxies:
        hops = config.server.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)

    snapshotter = Snapshotter(manager, config.persistence.path, config.persistence.interval_seconds)
    app.extensions["queues.snapshotter"] = snapshotter
    app.extensions["queues.sweeper"] = LeaseSweeper(manager)
    snapshotter.start()
    app.extensions["queues.sweeper"].start()
    if journal is not None:
        journal.start()
    return app


def shutdown(app):
    """Stop taking changes, write the final snapshot and flush the request log."""
    app.extensions["queues.sweeper"].stop()
    app.extensions["queues.manager"].close()
    app.extensions["queues.snapshotter"].stop()
    if app.extensions["queues.journal"] is not None:
        app.extensions["queues.journal"].close()
    app.extensions["queues.request_log"].close()
