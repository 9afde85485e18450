"""Shared fixtures: a config under tmp_path, a fresh app per test, its client, and credentials."""

import base64
import json
import time
from pathlib import Path

import pytest
from werkzeug.security import generate_password_hash

from app import create_app, shutdown
from queues.config import load_config
from queues.users import User, save_users

REPO = Path(__file__).resolve().parents[1]
PASSWORDS = {"admin": "admin-secret-1", "manager": "manager-secret-2", "auditor": "auditor-secret-3"}
# A real salted hash, with few iterations so that tests stay fast.
FAST_HASH = "pbkdf2:sha256:1000"


def write_users(path, passwords=PASSWORDS):
    """Write a users file where each user's role is its name."""
    save_users(
        path, {n: User(n, n, generate_password_hash(p, method=FAST_HASH)) for n, p in passwords.items()}
    )


def write_config(directory, **sections):
    """Write directory/config.ini (and users.yaml) with test defaults plus {section: {key: value}}."""
    values = {
        "server": {"port": "7500"},
        "persistence": {"path": "data/queues.pickle", "interval_seconds": "3600"},
        "auth": {"users_file": "users.yaml"},
        "logging": {"file": "logs/requests.log", "level": "WARNING"},
    }
    for section, keys in sections.items():
        values.setdefault(section, {}).update({k: str(v) for k, v in keys.items()})
    text = "".join(
        f"[{section}]\n" + "".join(f"{key} = {value}\n" for key, value in keys.items())
        for section, keys in values.items()
    )
    path = Path(directory) / "config.ini"
    path.write_text(text)
    if not (Path(directory) / "users.yaml").exists():
        write_users(Path(directory) / "users.yaml")
    return path


def eventually(condition, timeout=15.0):
    """Poll condition until it is true; fail the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


class Clock:
    """A wall clock the test moves by hand (backends take clock=)."""

    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


def lease(qm, count=1, seconds=30, queue="jobs"):
    """Pull count messages of queue on a lease from a backend; their pulled forms, parsed."""
    return [json.loads(r) for r in qm.pull(queue, count, lease=seconds)]


def basic(user, password=None):
    """An Authorization header for user (with its own password unless one is given)."""
    token = base64.b64encode(f"{user}:{password or PASSWORDS.get(user, 'x')}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """One real redis-server for the whole run; each user starts from an empty database."""
    from tests.redis_server import RedisServer  # it imports this module: a top-level import would cycle

    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


def backend_sections(backend, redis_server, workers=2):
    """Config sections for a live server on backend; with redis, an emptied database and several workers."""
    if backend == "memory":
        return {}
    redis_server.client().flushall()
    return {"storage": {"backend": "redis", "redis_url": redis_server.url}, "server": {"workers": workers}}


@pytest.fixture(scope="module", params=["memory", "redis"])
def live(request, tmp_path_factory):
    """A real gunicorn running the service, shared by one test module's tests, on each backend."""
    from tests.live_server import LiveServer

    redis_server = request.getfixturevalue("redis_server") if request.param == "redis" else None
    server = LiveServer(tmp_path_factory.mktemp("live"), **backend_sections(request.param, redis_server))
    server.backend = request.param
    server.start()
    yield server
    server.stop()


@pytest.fixture
def make_app(tmp_path):
    """Build apps from config overrides; every app built is shut down after the test."""
    apps = []

    def make(**sections):
        app = create_app(load_config(write_config(tmp_path, **sections)))
        apps.append(app)
        return app

    yield make
    for app in apps:
        shutdown(app)


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture(params=["memory", "redis"])
def app_on_each_backend(request, make_app):
    """An app on the memory backend, then one on a real Redis: for the modules that check both."""
    redis_server = request.getfixturevalue("redis_server") if request.param == "redis" else None
    return make_app(**backend_sections(request.param, redis_server, workers=1))


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def auth_header():
    return basic


@pytest.fixture
def admin(client):
    """The client, acting as admin: admin.post(path, json=...) etc."""
    return _ActingClient(client, basic("admin"))


@pytest.fixture
def manager(client):
    return _ActingClient(client, basic("manager"))


class _ActingClient:
    """A test client that sends one user's credentials with every request."""

    def __init__(self, client, headers):
        self._client = client
        self._headers = headers

    def __getattr__(self, method):
        def call(path, headers=None, **kwargs):
            return getattr(self._client, method)(path, headers={**self._headers, **(headers or {})}, **kwargs)

        return call
