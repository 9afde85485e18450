"""The application factory: wires configuration, queues, auth, errors, request log and routes."""

import logging
import sys

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from queues import auth, metrics, origin, request_body, request_log
from queues.config import ConfigError, load_config
from queues.error_handlers import register_error_handlers
from queues.errors import StorageUnavailable
from queues.memory.backend import MemoryBackend
from queues.openapi import render_openapi
from queues.redis_manager import RedisBackend
from queues.request_log import RequestLog
from queues.routes import admin, messages, operators, ui
from queues.routes import metrics as metrics_routes
from queues.schemas import SchemaFileError, load_schemas
from queues.users import UsersFileError
from storage.folder_lock import DataFolderBusy
from storage.journal import JournalError
from storage.snapshot import SnapshotError

# What stops start-up with a one-line message instead of a traceback.
# StorageUnavailable: the journal cannot record that the restart ended the leases.
STARTUP_ERRORS = (
    ConfigError,
    SnapshotError,
    JournalError,
    SchemaFileError,
    UsersFileError,
    StorageUnavailable,
    DataFolderBusy,
    OSError,
)
_STDERR_HANDLER = "queues-stderr"
log = logging.getLogger("queues.app")  # under "queues", whose records go to stderr


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
    auth.init_app(app, config)

    backend = RedisBackend(config) if config.storage.backend == "redis" else MemoryBackend(config)
    app.extensions["queues.backend"] = backend
    register_error_handlers(app)
    metrics.init_app(app)  # first, so that its timing encloses the request log's hooks
    dropped = app.extensions["queues.metrics"].request_log_dropped
    request_log.init_app(app, RequestLog(config.logging.file, config.logging.max_body_bytes, dropped.inc))
    origin.init_app(app)  # a before_request hook: after routing, before the views' auth checks
    app.register_blueprint(admin.bp)
    app.register_blueprint(messages.bp)
    app.register_blueprint(operators.bp)
    app.register_blueprint(metrics_routes.bp)
    app.register_blueprint(ui.bp)
    request_body.init_app(app)
    if config.server.trusted_proxies:
        hops = config.server.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)
    backend.start()
    _log_start(config, backend.queues)
    return app


def _log_start(config, queues):
    """One line on what this start found; a Redis that is away now does not stop the start."""
    try:
        infos = queues.list()
        found = f"{len(infos)} queue(s) and {sum(q['size'] for q in infos)} message(s) restored"
    except StorageUnavailable as exc:
        found = f"queues not counted ({exc.message})"
    log.info("started with config %s, %s backend: %s", config.source, config.storage.backend, found)


def shutdown(app):
    """Stop taking changes, write the final snapshot (memory backend) and flush the request log."""
    app.extensions["queues.backend"].stop()
    app.extensions["queues.request_log"].close()
