"""Configuration: the shipped defaults, overrides, and a clear error for every bad value."""

from pathlib import Path

import pytest

from queues.config import DEFAULT_CONFIG_FILE, ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[1]


def test_shipped_config_file_holds_the_embedded_defaults():
    shipped = load_config(DEFAULT_CONFIG_FILE, environ={})
    defaults = parse_config("", source=str(DEFAULT_CONFIG_FILE), base_dir=REPO)
    assert shipped == defaults
    assert shipped.persistence.path == REPO / "data" / "queues.pickle"
    assert shipped.auth.users_file == REPO / "users.yaml"
    assert shipped.logging.file == REPO / "logs" / "requests.log"


def test_empty_file_gives_the_defaults():
    config = parse_config("", base_dir=Path("/srv"))
    assert config.server.port == 7500
    assert config.persistence.path == Path("/srv/data/queues.pickle")


def test_environment_variable_selects_the_file_and_relative_paths_follow_it(tmp_path):
    (tmp_path / "other.ini").write_text("[server]\nport = 7600\n[persistence]\npath = state/q.pickle\n")
    config = load_config(environ={"QUEUES_CONFIG": str(tmp_path / "other.ini")})
    assert config.server.port == 7600
    assert config.persistence.path == tmp_path / "state" / "q.pickle"


@pytest.mark.parametrize("text", ["on", "true", "yes", "On", "TRUE"])
def test_booleans_accept_on_true_yes(text):
    assert parse_config(f"[persistence]\njournal = {text}\n").persistence.journal is True


@pytest.mark.parametrize("text", ["off", "false", "no"])
def test_booleans_accept_off_false_no(text):
    assert parse_config(f"[persistence]\njournal = {text}\n").persistence.journal is False


@pytest.mark.parametrize(
    ("section", "key", "value", "allowed"),
    [
        ("server", "port", "0", "an integer from 1 to 65535"),
        ("server", "port", "http", "an integer from 1 to 65535"),
        ("server", "threads", "0", "an integer from 1"),
        ("server", "trusted_proxies", "-1", "an integer from 0"),
        ("queues", "max_messages", "0", "an integer from 1"),
        ("queues", "max_batch", "lots", "an integer from 1"),
        ("queues", "max_request_bytes", "10", "an integer from 1024"),
        ("queues", "max_wait_seconds", "-1", "a number >= 0"),
        ("persistence", "interval_seconds", "0", "a number > 0"),
        ("persistence", "interval_seconds", "nan", "a number > 0"),
        ("persistence", "journal", "maybe", "on/off, true/false or yes/no"),
        ("persistence", "fsync", "sometimes", "one of always, everysec, no"),
        ("logging", "level", "LOUD", "one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
        ("logging", "max_body_bytes", "-5", "an integer from 0"),
        ("storage", "backend", "postgres", "one of memory, redis"),
    ],
)
def test_bad_value_names_file_section_key_and_what_is_allowed(tmp_path, section, key, value, allowed):
    path = tmp_path / "bad.ini"
    path.write_text(f"[{section}]\n{key} = {value}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert str(path) in message and f"[{section}] {key}" in message and allowed in message


def test_waiting_pulls_default_to_three_quarters_of_the_threads_and_leave_one_free():
    assert parse_config("[server]\nthreads = 16\n").queues.max_waiting_pulls == 12
    assert parse_config("[server]\nthreads = 1\n").queues.max_waiting_pulls == 0
    with pytest.raises(ConfigError, match=r"\[queues\] max_waiting_pulls = '8'.*from 0 to 7"):
        parse_config("[server]\nthreads = 8\n[queues]\nmax_waiting_pulls = 8\n")


def test_unknown_key_is_refused_naming_the_known_ones():
    with pytest.raises(ConfigError, match=r"\[queues\] max_mesages is not a known key.*max_messages"):
        parse_config("[queues]\nmax_mesages = 5\n")


def test_unknown_section_is_refused():
    with pytest.raises(ConfigError, match=r"\[queue\] is not a known section"):
        parse_config("[queue]\nmax_messages = 5\n")


def test_more_than_one_worker_is_refused_with_the_memory_backend():
    with pytest.raises(ConfigError, match=r"\[server\] workers = 2.*memory"):
        parse_config("[server]\nworkers = 2\n")


def test_several_workers_are_allowed_with_the_redis_backend():
    config = parse_config(
        "[server]\nworkers = 4\n[storage]\nbackend = redis\nredis_url = redis://127.0.0.1:6379/0\n"
    )
    assert (config.server.workers, config.storage.redis_url) == (4, "redis://127.0.0.1:6379/0")


@pytest.mark.parametrize("url", ["", "http://127.0.0.1:6379"])
def test_redis_backend_needs_a_redis_url(url):
    with pytest.raises(ConfigError, match=r"\[storage\] redis_url = .* is needed with backend = redis"):
        parse_config(f"[storage]\nbackend = redis\nredis_url = {url}\n")


def test_missing_file_is_named():
    with pytest.raises(ConfigError, match="nowhere.ini"):
        load_config("/nowhere.ini")


def test_file_that_is_not_ini_is_refused():
    with pytest.raises(ConfigError, match="not a valid INI file"):
        parse_config("port = 5\n")
