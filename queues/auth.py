"""HTTP Basic authentication and roles: the only module that sees passwords.

A slow salted hash is checked once per distinct (user, password); after that the pair is found in
an in-memory cache keyed by a keyed BLAKE2 digest of it, so no plain password is kept.
"""

import hashlib
import logging
import os
import secrets
import threading
import time

from flask import current_app
from flask_httpauth import HTTPBasicAuth
from werkzeug.security import check_password_hash, generate_password_hash

from queues.error_handlers import error_response
from queues.users import ROLES_WITH_ACCESS, load_users

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

    def __init__(self, users_file):
        self._path = users_file
        self._key = secrets.token_bytes(32)
        self._lock = threading.Lock()
        self._cache = {}
        self._users = load_users(users_file)
        self._stamp = self._file_stamp()
        self._next_check = 0.0
        # Checked for unknown names, so a wrong name costs as much time as a wrong password.
        self._dummy_hash = generate_password_hash(secrets.token_hex(16), method=self._hash_method())

    def _hash_method(self):
        """The hash method of the users file's first user (werkzeug's default if there is none)."""
        for user in self._users.values():
            return user.password_hash.split("$", 1)[0]
        return "scrypt"

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
                with self._lock:
                    self._users, self._stamp = users, stamp
                    self._cache.clear()
                log.info("reloaded users file %s (%d users)", self._path, len(users))
        except Exception:
            log.exception("users file %s could not be reloaded; keeping the previous users", self._path)

    def verify(self, username, password):
        """The User for these credentials, or None."""
        self._reload_if_changed()
        key = hashlib.blake2b(f"{username}\0{password}".encode(), key=self._key, digest_size=32).digest()
        user = self._cache.get(key)
        if user is not None:
            return user
        with self._lock:
            users = self._users
        user = users.get(username)
        if user is None:
            check_password_hash(self._dummy_hash, password)
            return None
        if not check_password_hash(user.password_hash, password):
            return None
        with self._lock:
            if users is self._users:
                if len(self._cache) >= MAX_CACHED:
                    self._cache.clear()
                self._cache[key] = user
        return user


@auth.verify_password
def _verify_password(username, password):
    if not username:
        return None
    return current_app.extensions["queues.authenticator"].verify(username, password)


@auth.get_user_roles
def _user_roles(user):
    return user.role


@auth.error_handler
def _auth_error(status):
    return error_response(status, "authentication failed")


def init_app(app, users_file):
    """Attach an Authenticator for users_file to app."""
    app.extensions["queues.authenticator"] = Authenticator(users_file)
