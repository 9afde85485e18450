"""Read and validate the service configuration: the only code that reads the INI file or the environment."""

import configparser
import os
from dataclasses import dataclass
from pathlib import Path

CONFIG_ENV_VAR = "QUEUES_CONFIG"
DEFAULT_CONFIG_FILE = Path(__file__).resolve().parent.parent / "config.ini"

BOOLEANS = {"on": True, "true": True, "yes": True, "off": False, "false": False, "no": False}
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FSYNC_POLICIES = ("always", "everysec", "no")
BACKENDS = ("memory", "redis")
REDIS_URL_SCHEMES = ("redis://", "rediss://", "unix://")


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names file, section, key and what is allowed."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 7500
    threads: int = 16
    workers: int = 1
    trusted_proxies: int = 0


@dataclass(frozen=True)
class QueuesConfig:
    max_messages: int = 10_000
    max_request_bytes: int = 1_048_576
    max_batch: int = 100
    max_wait_seconds: float = 20.0
    max_lease_seconds: int = 43_200
    idempotency_seconds: int = 300
    # None until parsed: the default depends on [server] threads (see _default_waiting_pulls).
    max_waiting_pulls: int | None = None


@dataclass(frozen=True)
class PersistenceConfig:
    path: Path = Path("data/queues.pickle")
    interval_seconds: float = 5.0
    journal: bool = False
    fsync: str = "everysec"


@dataclass(frozen=True)
class AuthConfig:
    users_file: Path = Path("users.yaml")
    max_failed_logins: int = 10
    failed_login_window_seconds: float = 60.0


@dataclass(frozen=True)
class LoggingConfig:
    file: Path = Path("logs/requests.log")
    level: str = "INFO"
    max_body_bytes: int = 4096


@dataclass(frozen=True)
class StorageConfig:
    backend: str = "memory"
    redis_url: str = ""


@dataclass(frozen=True)
class Config:
    """The whole validated configuration; built once at start-up and never changed."""

    server: ServerConfig = ServerConfig()
    queues: QueuesConfig = QueuesConfig()
    persistence: PersistenceConfig = PersistenceConfig()
    auth: AuthConfig = AuthConfig()
    logging: LoggingConfig = LoggingConfig()
    storage: StorageConfig = StorageConfig()
    source: str = "<defaults>"


class _Section:
    """Typed access to one INI section that records which keys were read."""

    def __init__(self, parser, name, source, base_dir):
        self.name = name
        self.values = dict(parser[name]) if parser.has_section(name) else {}
        self.source = source
        self.base_dir = base_dir
        self.known = set()

    def _raw(self, key):
        self.known.add(key)
        return self.values.get(key)

    def fail(self, key, allowed, value):
        raise ConfigError(
            f"{self.source}: [{self.name}] {key} = {value!r} is not allowed: expected {allowed}"
        )

    def integer(self, key, default, low, high=None):
        raw = self._raw(key)
        if raw is None:
            return default
        allowed = f"an integer from {low}" + (f" to {high}" if high is not None else " up")
        try:
            value = int(raw)
        except ValueError:
            self.fail(key, allowed, raw)
        if value < low or (high is not None and value > high):
            self.fail(key, allowed, raw)
        return value

    def number(self, key, default, low, inclusive=True):
        raw = self._raw(key)
        if raw is None:
            return default
        allowed = f"a number {'>=' if inclusive else '>'} {low}"
        try:
            value = float(raw)
        except ValueError:
            self.fail(key, allowed, raw)
        if value != value or value == float("inf") or value < low or (value == low and not inclusive):
            self.fail(key, allowed, raw)
        return value

    def boolean(self, key, default):
        raw = self._raw(key)
        if raw is None:
            return default
        if raw.lower() not in BOOLEANS:
            self.fail(key, "on/off, true/false or yes/no", raw)
        return BOOLEANS[raw.lower()]

    def choice(self, key, default, choices, transform=str.lower):
        raw = self._raw(key)
        if raw is None:
            return default
        if transform(raw) not in choices:
            self.fail(key, "one of " + ", ".join(choices), raw)
        return transform(raw)

    def text(self, key, default):
        raw = self._raw(key)
        return default if raw is None else raw.strip()

    def path(self, key, default):
        raw = self._raw(key)
        if raw is not None and not raw.strip():
            self.fail(key, "a file path", raw)
        return self.base_dir / Path(raw.strip() if raw is not None else default)

    def check_unknown_keys(self):
        for key in self.values:
            if key not in self.known:
                raise ConfigError(
                    f"{self.source}: [{self.name}] {key} is not a known key: "
                    f"expected one of {', '.join(sorted(self.known))}"
                )


def _server(s):
    return ServerConfig(
        host=s.text("host", ServerConfig.host),
        port=s.integer("port", ServerConfig.port, 1, 65535),
        threads=s.integer("threads", ServerConfig.threads, 1, 1024),
        workers=s.integer("workers", ServerConfig.workers, 1, 64),
        trusted_proxies=s.integer("trusted_proxies", ServerConfig.trusted_proxies, 0, 16),
    )


def _default_waiting_pulls(threads):
    """Three quarters of the threads may wait in long polls; the rest stay free for pushes."""
    return threads * 3 // 4


def _queues(s, threads):
    return QueuesConfig(
        max_messages=s.integer("max_messages", QueuesConfig.max_messages, 1),
        max_request_bytes=s.integer("max_request_bytes", QueuesConfig.max_request_bytes, 1024),
        max_batch=s.integer("max_batch", QueuesConfig.max_batch, 1, 10_000),
        max_wait_seconds=s.number("max_wait_seconds", QueuesConfig.max_wait_seconds, 0),
        max_lease_seconds=s.integer("max_lease_seconds", QueuesConfig.max_lease_seconds, 1),
        idempotency_seconds=s.integer("idempotency_seconds", QueuesConfig.idempotency_seconds, 1, 604_800),
        max_waiting_pulls=s.integer(
            "max_waiting_pulls", _default_waiting_pulls(threads), 0, max(threads - 1, 0)
        ),
    )


def _persistence(s):
    return PersistenceConfig(
        path=s.path("path", PersistenceConfig.path),
        interval_seconds=s.number("interval_seconds", PersistenceConfig.interval_seconds, 0, inclusive=False),
        journal=s.boolean("journal", PersistenceConfig.journal),
        fsync=s.choice("fsync", PersistenceConfig.fsync, FSYNC_POLICIES),
    )


def _logging(s):
    return LoggingConfig(
        file=s.path("file", LoggingConfig.file),
        level=s.choice("level", LoggingConfig.level, LOG_LEVELS, transform=str.upper),
        max_body_bytes=s.integer("max_body_bytes", LoggingConfig.max_body_bytes, 0),
    )


def _storage(s):
    return StorageConfig(
        backend=s.choice("backend", StorageConfig.backend, BACKENDS),
        redis_url=s.text("redis_url", StorageConfig.redis_url),
    )


def _auth(s):
    return AuthConfig(
        users_file=s.path("users_file", AuthConfig.users_file),
        max_failed_logins=s.integer("max_failed_logins", AuthConfig.max_failed_logins, 1, 1_000_000),
        failed_login_window_seconds=s.number(
            "failed_login_window_seconds", AuthConfig.failed_login_window_seconds, 0, inclusive=False
        ),
    )


_SECTIONS = {
    "server": _server,
    "queues": _queues,
    "persistence": _persistence,
    "auth": _auth,
    "logging": _logging,
    "storage": _storage,
}


def _check_combinations(config):
    """Reject settings that are valid alone but not together."""
    source = config.source
    if config.storage.backend == "redis":
        if not config.storage.redis_url.startswith(REDIS_URL_SCHEMES):
            raise ConfigError(
                f"{source}: [storage] redis_url = {config.storage.redis_url!r} is needed with "
                f"backend = redis: expected a URL starting with {', '.join(REDIS_URL_SCHEMES)}"
            )
    elif config.server.workers != 1:
        raise ConfigError(
            f"{source}: [server] workers = {config.server.workers} is not allowed with "
            "[storage] backend = memory: expected 1 (the queues live in one process's memory; "
            "use backend = redis for more)"
        )


def parse_config(text, source="<string>", base_dir=Path(".")):
    """Build a Config from INI text; relative paths are resolved against base_dir."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=source)
    except configparser.Error as exc:
        raise ConfigError(f"{source}: not a valid INI file: {exc}") from exc
    for name in parser.sections():
        if name not in _SECTIONS:
            raise ConfigError(
                f"{source}: [{name}] is not a known section: expected one of {', '.join(_SECTIONS)}"
            )
    parts = {}
    for name, build in _SECTIONS.items():
        section = _Section(parser, name, source, base_dir)
        # [queues] limits long polls by the thread count, so [server] is read first.
        parts[name] = build(section, parts["server"].threads) if name == "queues" else build(section)
        section.check_unknown_keys()
    config = Config(**parts, source=source)
    _check_combinations(config)
    return config


def load_config(path=None, environ=os.environ):
    """Load the file named by path, else by $QUEUES_CONFIG, else config.ini beside the code."""
    path = Path(path or environ.get(CONFIG_ENV_VAR) or DEFAULT_CONFIG_FILE).resolve()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror}") from exc
    return parse_config(text, source=str(path), base_dir=path.parent)
