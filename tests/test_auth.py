"""Credential checks: the slow hash runs once per distinct credential pair, then the cache answers."""

import pytest

from queues import auth as auth_module
from queues.auth import Authenticator
from tests.conftest import PASSWORDS, write_users


@pytest.fixture
def counted(tmp_path, monkeypatch):
    """An Authenticator over a fresh users file, and a list that records each slow hash check."""
    write_users(tmp_path / "users.yaml")
    authenticator = Authenticator(tmp_path / "users.yaml")
    checks = []
    real_check = auth_module.check_password_hash

    def check(hashed, password):
        checks.append(password)
        return real_check(hashed, password)

    monkeypatch.setattr(auth_module, "check_password_hash", check)
    return authenticator, checks


def test_verified_credentials_are_cached(counted):
    authenticator, checks = counted
    for _ in range(5):
        assert authenticator.verify("manager", PASSWORDS["manager"]).role == "manager"
    assert checks == [PASSWORDS["manager"]]


def test_wrong_password_is_never_cached_or_accepted(counted):
    authenticator, checks = counted
    assert authenticator.verify("manager", PASSWORDS["manager"]) is not None
    for _ in range(3):
        assert authenticator.verify("manager", "guess") is None
    assert checks.count("guess") == 3


def test_unknown_user_still_pays_for_a_hash_check(counted):
    authenticator, checks = counted
    assert authenticator.verify("nobody", "pw") is None
    assert checks == ["pw"]


def test_cache_key_binds_user_and_password(counted):
    authenticator, _ = counted
    assert authenticator.verify("admin", PASSWORDS["admin"]) is not None
    assert authenticator.verify("manager", PASSWORDS["admin"]) is None


def test_changed_users_file_empties_the_cache(counted, tmp_path, monkeypatch):
    authenticator, _ = counted
    monkeypatch.setattr(auth_module, "RELOAD_CHECK_SECONDS", 0.0)
    assert authenticator.verify("admin", PASSWORDS["admin"]) is not None
    write_users(tmp_path / "users.yaml", {"admin": "rotated"})
    assert authenticator.verify("admin", PASSWORDS["admin"]) is None
    assert authenticator.verify("admin", "rotated") is not None


def test_broken_users_file_on_reload_keeps_the_previous_users(counted, tmp_path, monkeypatch, caplog):
    authenticator, _ = counted
    monkeypatch.setattr(auth_module, "RELOAD_CHECK_SECONDS", 0.0)
    (tmp_path / "users.yaml").write_text("users: [this is not a mapping]\n")
    assert authenticator.verify("admin", PASSWORDS["admin"]) is not None
    assert "could not be reloaded" in caplog.text
