"""HTTP Basic authentication and roles: the only module that sees passwords.

A slow salted hash is checked once per distinct (user, password); after that the pair is found in
an in-memory cache keyed by a keyed BLAKE2 digest of it, so no plain password is kept. Failed logins
are counted per source address (queues.login_throttle), checked before any hash runs.
"""

import hashlib
import logging
import os
import secrets
import threading
import time

from flask import current_app, request
from flask_httpauth import HTTPBasicAuth
from werkzeug.security import check_password_hash, generate_password_hash

from queues.config import ServerConfig
from queues.error_handlers import error_response
from queues.errors import TooManyRequests
from queues.login_throttle import FailedLogins, SharedFailedLogins, hash_slots_for
from queues.tarpit import Tarpit
from queues.users import ROLES_WITH_ACCESS, UsersFileError, load_users

log = logging.getLogger(__name__)

auth = HTTPBasicAuth(realm="queues")
ANY_ROLE_WITH_ACCESS = list(ROLES_WITH_ACCESS)
ADMIN = ["admin"]
RELOAD_CHECK_SECONDS = 1.0
MAX_CACHED = 10_000


class Authenticator:
    """Verifies credentials against the users file, caching successes; thread-safe.

    The file is re-read when it changes (checked at most once a second), which empties the cache,
    so a changed password or role takes effect without a restart.
    """

    def __init__(self, users_file, hash_slots=None):
        self._path = users_file
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._cache = {}
        self._checking = {}  # credentials' key -> the _Check under way for them
        self._users = load_users(users_file)
        self._dummies = dummy_hashes(users_file, self._users)
        self._stamp = self._file_stamp()
        self._next_check = 0.0
        self._hash_slots = hash_slots or hash_slots_for(ServerConfig.threads)

    def _file_stamp(self):
        stat = os.stat(self._path)
        return stat.st_mtime_ns, stat.st_size, stat.st_ino

    def _reload_if_changed(self):
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + RELOAD_CHECK_SECONDS
        try:
            stamp = self._file_stamp()
            if stamp != self._stamp:
                users = load_users(self._path)
                dummies = dummy_hashes(self._path, users)
                with self._lock:
                    self._users, self._dummies, self._stamp = users, dummies, stamp
                    self._cache.clear()
                log.info("reloaded users file %s (%d users)", self._path, len(users))
        except (UsersFileError, OSError) as exc:
            log.error("users file could not be reloaded; keeping the previous users: %s", exc)
        except Exception:
            log.exception("users file %s could not be reloaded; keeping the previous users", self._path)

    def verify(self, username, password):
        """The User for these credentials, or None; raises TooManyRequests when the hash is busy."""
        self._reload_if_changed()
        key = hashlib.blake2b(f"{username}\0{password}".encode(), key=self._key, digest_size=32).digest()
        user = self._cache.get(key)
        if user is not None:
            return user
        with self._lock:
            users, dummies = self._users, self._dummies
            check = self._checking.get(key)
            first = check is None
            if first:
                check = self._checking[key] = _Check()
        if not first:
            # The same credentials are being hashed for another request (workers starting together
            # share theirs): its answer is this one's, for no slot and no second hash.
            return check.outcome()
        try:
            with self._hash_slots:
                user = users.get(username)
                matched = _check_as_every_method(user, password, dummies)
            check.user = user if matched else None
        except Exception as exc:  # the waiting requests get the same error, and nobody is let in
            check.error = exc
            raise
        finally:
            with self._lock:
                del self._checking[key]
                if check.user is not None and users is self._users:
                    if len(self._cache) >= MAX_CACHED:
                        self._cache.clear()
                    self._cache[key] = check.user
            check.done.set()
        return check.user


class _Check:
    """One password check under way, which requests with the same credentials wait for."""

    __slots__ = ("done", "user", "error")

    def __init__(self):
        self.done = threading.Event()
        self.user = None
        self.error = None

    def outcome(self):
        """The User it found (None: wrong credentials), once done; raises what it raised."""
        self.done.wait()
        if self.error is not None:
            raise self.error
        return self.user


def _hash_method(password_hash):
    return password_hash.split("$", 1)[0]


def dummy_hashes(path, users):
    """{method: a hash of a random password} for each hash method in users.

    Raises UsersFileError naming the first user whose hash this service cannot check.
    """
    dummies = {}
    for user in users.values():
        method = _hash_method(user.password_hash)
        if method not in dummies:
            try:
                dummies[method] = generate_password_hash(secrets.token_hex(16), method=method)
            except (ValueError, TypeError, MemoryError) as exc:
                raise UsersFileError(
                    f"{path}: user {user.name!r} has a password hash this service cannot check "
                    f"(method {method!r}: {exc})"
                ) from exc
        if user.password_hash.count("$") < 2:
            raise UsersFileError(f"{path}: user {user.name!r} has a malformed password hash")
    return dummies or {"scrypt": generate_password_hash(secrets.token_hex(16))}


def _check_as_every_method(user, password, dummies):
    """Check password against user's hash and a dummy of every other method in the file.

    Every name, known or not, so costs one check per method: timing tells no names apart.
    """
    own = _hash_method(user.password_hash) if user is not None else None
    matched = False
    for method, dummy in dummies.items():
        if method == own:
            matched = check_password_hash(user.password_hash, password)
        else:
            check_password_hash(dummy, password)
    return matched


def _source():
    """The client's address (the forwarded one behind trusted proxies)."""
    return request.remote_addr or "-"


@auth.verify_password
def _verify_password(username, password):
    if not username:
        return None  # no credentials: not a failed login
    failed_logins = current_app.extensions["queues.failed_logins"]
    source = _source()
    try:
        failed_logins.check(source)
        user = current_app.extensions["queues.authenticator"].verify(username, password)
    except TooManyRequests:
        tarpit = current_app.extensions.get("queues.tarpit")
        if tarpit is not None:
            tarpit.hold(source)
        raise
    if user is None:
        failed_logins.fail(source)
    return user


@auth.get_user_roles
def _user_roles(user):
    return user.role


@auth.error_handler
def _auth_error(status):
    return error_response(status, "authentication failed")


def init_app(app, config):
    """Attach an Authenticator for the users file, a failed-login count and a tarpit to app."""
    app.extensions["queues.authenticator"] = Authenticator(
        config.auth.users_file, hash_slots_for(config.server.threads)
    )
    limits = (config.auth.max_failed_logins, config.auth.failed_login_window_seconds)
    app.extensions["queues.failed_logins"] = (
        SharedFailedLogins(config.storage.redis_url, *limits)
        if config.storage.backend == "redis"
        else FailedLogins(*limits)
    )
    if not config.server.trusted_proxies:  # behind a proxy, every client shares its address
        app.extensions["queues.tarpit"] = Tarpit()
