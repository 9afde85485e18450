"""Credential checks: the slow hash runs once per distinct credential pair, then the cache answers."""

import threading
import time

import pytest
from werkzeug.security import generate_password_hash

from queues import auth as auth_module
from queues.auth import Authenticator
from queues.errors import TooManyRequests
from queues.login_throttle import FailedLogins, HashSlots, SharedFailedLogins, hash_slots_for
from queues.users import User, UsersFileError, load_users, save_users
from tests.conftest import FAST_HASH, PASSWORDS, backend_sections, basic, write_users


@pytest.fixture
def counted(tmp_path, monkeypatch):
    """An Authenticator over a fresh users file, and a list that records each slow hash check."""
    write_users(tmp_path / "users.yaml")
    authenticator = Authenticator(tmp_path / "users.yaml")
    return authenticator, record_checks(monkeypatch)


def record_checks(monkeypatch):
    """A list that gets (hash method, password) for every slow hash check from now on."""
    checks = []
    real_check = auth_module.check_password_hash

    def check(hashed, password):
        checks.append((hashed.split("$", 1)[0], password))
        return real_check(hashed, password)

    monkeypatch.setattr(auth_module, "check_password_hash", check)
    return checks


def test_verified_credentials_are_cached(counted):
    authenticator, checks = counted
    for _ in range(5):
        assert authenticator.verify("manager", PASSWORDS["manager"]).role == "manager"
    assert [password for _, password in checks] == [PASSWORDS["manager"]]


def test_wrong_password_is_never_cached_or_accepted(counted):
    authenticator, checks = counted
    assert authenticator.verify("manager", PASSWORDS["manager"]) is not None
    for _ in range(3):
        assert authenticator.verify("manager", "guess") is None
    assert [password for _, password in checks].count("guess") == 3


def test_unknown_user_still_pays_for_a_hash_check(counted):
    authenticator, checks = counted
    assert authenticator.verify("nobody", "pw") is None
    assert [password for _, password in checks] == ["pw"]


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


def write_mixed_users(path):
    """A users file mixing hash methods: a fast pbkdf2 user and a slow scrypt one."""
    save_users(
        path,
        {
            "fast": User("fast", "manager", generate_password_hash("pw-fast", method=FAST_HASH)),
            "slow": User("slow", "manager", generate_password_hash("pw-slow", method="scrypt:1024:8:1")),
        },
    )


def test_every_name_costs_one_check_per_method_when_methods_are_mixed(tmp_path, monkeypatch):
    write_mixed_users(tmp_path / "users.yaml")
    authenticator = Authenticator(tmp_path / "users.yaml")
    checks = record_checks(monkeypatch)
    costs = {}
    for name in ("fast", "slow", "nobody"):
        checks.clear()
        assert authenticator.verify(name, "wrong") is None
        costs[name] = sorted(method for method, _ in checks)
    assert costs["fast"] == costs["slow"] == costs["nobody"] == sorted([FAST_HASH, "scrypt:1024:8:1"])
    assert authenticator.verify("slow", "pw-slow").name == "slow"


@pytest.mark.parametrize(
    "bad_hash", ["md5$abc$def", "scrypt:x:8:1$salt$hash", "no-dollar-signs", "pbkdf2:nosuch:1$s$h"]
)
def test_a_hash_the_service_cannot_check_stops_start_up_naming_the_user(tmp_path, bad_hash):
    write_users(tmp_path / "users.yaml")
    users = load_users(tmp_path / "users.yaml")
    users["mallory"] = User("mallory", "admin", bad_hash)
    save_users(tmp_path / "users.yaml", users)
    with pytest.raises(UsersFileError, match="user 'mallory'") as raised:
        Authenticator(tmp_path / "users.yaml")
    assert "\n" not in str(raised.value)


def test_a_hash_the_service_cannot_check_on_reload_keeps_the_previous_users(
    counted, tmp_path, monkeypatch, caplog
):
    authenticator, _ = counted
    monkeypatch.setattr(auth_module, "RELOAD_CHECK_SECONDS", 0.0)
    users = load_users(tmp_path / "users.yaml")
    users["mallory"] = User("mallory", "admin", "md5$abc$def")
    save_users(tmp_path / "users.yaml", users)
    assert authenticator.verify("admin", PASSWORDS["admin"]) is not None
    assert authenticator.verify("mallory", "x") is None
    assert "user 'mallory'" in caplog.text and "keeping the previous users" in caplog.text


def test_logins_beyond_the_hash_slots_are_refused_at_once(tmp_path):
    slots = HashSlots(1)  # one hashing, one waiting; the next is refused
    entered = threading.Event()
    release = threading.Event()

    def hold():
        with slots:
            entered.set()
            release.wait(5)

    holders = [threading.Thread(target=hold) for _ in range(2)]
    for holder in holders:
        holder.start()
    entered.wait(5)
    time.sleep(0.1)  # the second holder is now waiting for the slot
    with pytest.raises(TooManyRequests) as refused:
        slots.__enter__()
    assert refused.value.headers == {"Retry-After": "1"}
    release.set()
    for holder in holders:
        holder.join(5)


def test_failed_logins_slide_out_of_the_window_one_by_one():
    now = [1000.0]
    failed = FailedLogins(3, 60, clock=lambda: now[0])
    for offset in (0, 10, 20):
        now[0] = 1000 + offset
        failed.fail("10.0.0.1")
    with pytest.raises(TooManyRequests) as refused:
        failed.check("10.0.0.1")
    assert refused.value.headers == {"Retry-After": "40"}  # the first failure leaves at 1060
    failed.check("10.0.0.2")  # another source is not affected
    now[0] = 1060.5
    failed.check("10.0.0.1")  # one slot free again
    failed.fail("10.0.0.1")
    with pytest.raises(TooManyRequests):
        failed.check("10.0.0.1")


@pytest.mark.parametrize(
    "threads, cpus, slots",
    [(16, 2, 1), (16, 1, 1), (16, 8, 4), (16, 64, 4), (4, 64, 1), (1, 1, 1), (64, 12, 6)],
)
def test_hash_slots_are_a_quarter_of_the_threads_and_at_most_half_the_cpus(threads, cpus, slots):
    assert hash_slots_for(threads, cpus)._running._initial_value == slots


def test_half_the_threads_may_wait_for_the_hash():
    assert hash_slots_for(16, 2)._admitted._initial_value == 8


def test_requests_with_the_same_new_credentials_at_once_share_one_hash(counted):
    # 16 workers starting together with one user's credentials, against one hash slot: all are let
    # in, and the slow hash runs once, not sixteen times (nor answers any of them 429).
    authenticator, checks = counted
    authenticator._hash_slots = HashSlots(1)
    barrier = threading.Barrier(16)
    users = []

    def login():
        barrier.wait(5)
        users.append(authenticator.verify("manager", PASSWORDS["manager"]))

    threads = [threading.Thread(target=login) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(users) == 16 and all(user is not None and user.name == "manager" for user in users)
    assert len(checks) == 1


def test_failed_logins_in_redis_are_seen_by_every_worker_until_the_window_passes(redis_server):
    redis_server.client().flushall()
    one, other = (SharedFailedLogins(redis_server.url, 3, 1.5) for _ in range(2))
    for _ in range(2):
        one.fail("10.0.0.1")
    other.check("10.0.0.1")  # two failures of three: still allowed
    other.fail("10.0.0.1")
    with pytest.raises(TooManyRequests) as refused:
        one.check("10.0.0.1")
    assert refused.value.headers == {"Retry-After": "2"}  # ceil of the 1.5 s window, less a moment
    other.check("10.0.0.2")  # another source is not affected
    time.sleep(1.6)
    one.check("10.0.0.1")  # the window has passed


def test_a_password_check_that_fails_with_an_error_lets_nobody_in(counted, monkeypatch):
    authenticator, _ = counted

    def broken(hashed, password):
        raise RuntimeError("the hash could not be computed")

    monkeypatch.setattr(auth_module, "check_password_hash", broken)
    with pytest.raises(RuntimeError):
        authenticator.verify("manager", "a wrong password")
    monkeypatch.setattr(auth_module, "check_password_hash", lambda hashed, password: False)
    assert authenticator.verify("manager", "a wrong password") is None


@pytest.fixture
def two_instances(make_app, redis_server):
    """Test clients of two apps on one Redis (two workers, or two instances) allowing 3 failed logins,
    and a function that sends a GET /queues with given credentials to one, by default from 10.0.0.5."""
    sections = {**backend_sections("redis", redis_server, workers=1), "auth": {"max_failed_logins": 3}}
    one, other = make_app(**sections).test_client(), make_app(**sections).test_client()

    def login(client, credentials, source="10.0.0.5"):
        return client.get("/queues", headers=credentials, environ_base={"REMOTE_ADDR": source}).status_code

    return one, other, login


def test_guesses_at_once_are_refused_once_another_worker_saw_their_source_reach_the_limit(
    two_instances, monkeypatch
):
    one, other, login = two_instances
    assert login(one, basic("auditor")) == 403  # the attacker's own account logs in: under the limit
    for i in range(3):
        assert login(other, basic("manager", f"guess {i}")) == 401
    real_check = auth_module.check_password_hash

    def slow_check(*args):
        time.sleep(0.1)  # a real hash's time: the four guesses are all checked before one fails
        return real_check(*args)

    monkeypatch.setattr(auth_module, "check_password_hash", slow_check)
    statuses = []
    guesses = [
        threading.Thread(target=lambda i=i: statuses.append(login(one, basic("manager", f"more {i}"))))
        for i in range(4)
    ]
    for guess in guesses:
        guess.start()
    for guess in guesses:
        guess.join(10)
    assert statuses == [429] * 4


def test_a_right_password_guessed_once_another_worker_saw_the_limit_reached_gets_429(two_instances):
    one, other, login = two_instances
    assert login(one, basic("manager"), "10.0.0.6") == 200  # the manager, elsewhere: cached by this worker
    assert login(one, basic("auditor")) == 403  # the attacker's own account logs in: under the limit
    for i in range(3):
        assert login(other, basic("manager", f"guess {i}")) == 401
    assert login(one, basic("manager")) == 429
