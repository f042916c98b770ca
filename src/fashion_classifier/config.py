"""All settings, read from environment variables with documented defaults.

Every other module takes a :class:`Settings` (or one of its values) instead of reading the
environment itself. Each setting is declared once (variable, default, meaning, checks), and the
rest is derived from it: parsing, ``fashion-classifier config`` and docs/configuration.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The default artifact shipped in the repository (model/), used when FC_MODEL_DIR is unset.
DEFAULT_MODEL_DIR = PROJECT_ROOT / "model"

CLASS_NAMES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

# Model architectures (training/architectures.py builds them; named here so that commands which
# import no TensorFlow can offer them). The default reads photos: see docs/model.md.
ARCHITECTURES: tuple[str, ...] = ("compact", "cnn", "mlp")
DEFAULT_ARCHITECTURE = "compact"
# prometheus_client's multiprocess directory: read by the library itself, so not an FC_* name.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None


def _float(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


def _bool(name: str, raw: str) -> bool:
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true/false)")


def _text(_name: str, raw: str) -> str:
    return raw


def _list(_name: str, raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _path(_name: str, raw: str) -> Path:
    return Path(raw).expanduser()


def _token(_name: str, raw: str) -> str:
    return raw.strip()


def _one_of(choices: tuple[str, ...]) -> Callable[[str, str], str]:
    """A parser accepting one of ``choices`` (any case)."""

    def parse(name: str, raw: str) -> str:
        value = raw.lower()
        if value not in choices:
            raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
        return value

    return parse


PREDLOG_BACKENDS = ("sqlite", "cassandra", "off")
LOG_FORMATS = ("text", "json")
_PARSERS: dict[type, Callable[[str, str], Any]] = {int: _int, float: _float, bool: _bool, str: _text, tuple: _list}


def _setting(
    env: str,
    default: Any,
    doc: str,
    *,
    parse: Callable[[str, str], Any] | None = None,
    minimum: float | None = None,
    secret: bool = False,
) -> Any:
    """A Settings field read from ``env``: its one declaration (default, variable, doc, checks).

    ``parse`` defaults to the default's type; a path or an optional value names its own. An empty
    variable means the default, except for text, where it is a value.
    """
    parse = parse or _PARSERS[type(default)]
    return field(
        default=default,
        repr=not secret,
        metadata={"env": env, "doc": doc, "parse": parse, "minimum": minimum, "secret": secret},
    )


@dataclass(frozen=True)
class Settings:
    """Effective configuration: each field's variable, default and meaning are declared once here.

    ``fashion-classifier config`` prints the values, ``config --markdown`` the table of
    docs/configuration.md.
    """

    # --- data and training -------------------------------------------------------------
    data_dir: Path | None = _setting(
        "FC_DATA_DIR",
        None,
        "directory with the official Fashion-MNIST files; unset = download them with keras",
        parse=_path,
    )
    seed: int = _setting("FC_SEED", 42, "random seed of training")
    epochs: int = _setting(
        "FC_EPOCHS", 0, "training epochs; 0 = the architecture's (compact 24, cnn and mlp 15)", minimum=0
    )
    batch_size: int = _setting(
        "FC_BATCH_SIZE", 0, "training batch size; 0 = the architecture's (mlp 32, compact and cnn 64)", minimum=0
    )

    # --- model store ---------------------------------------------------------------------
    model_dir: Path = _setting("FC_MODEL_DIR", DEFAULT_MODEL_DIR, "the versioned model store", parse=_path)
    keep_versions: int = _setting("FC_KEEP_VERSIONS", 5, "versions kept when a new one is published", minimum=1)
    reload_interval: float = _setting(
        "FC_RELOAD_INTERVAL", 2.0, "seconds between a worker's checks for a new model version"
    )

    # --- serving ---------------------------------------------------------------------------
    host: str = _setting("FC_HOST", "127.0.0.1", "address `serve` listens on")
    port: int = _setting("FC_PORT", 8000, "port of the page and the APIs", minimum=0)
    metrics_port: int = _setting(
        "FC_METRICS_PORT",
        9464,
        "port where the gunicorn master serves the workers' summed metrics at /metrics "
        "(same host as FC_PORT, never the app's port); 0 = not served",
        minimum=0,
    )
    grpc_port: int = _setting(
        "FC_GRPC_PORT",
        0,
        "port of the Open Inference Protocol over gRPC (8081, as KServe), served by a process "
        "of its own beside the workers (same host as FC_PORT); 0 = off",
        minimum=0,
    )
    grpc_workers: int = _setting(
        "FC_GRPC_WORKERS",
        1,
        "gRPC server processes; more than one share FC_GRPC_PORT (SO_REUSEPORT: the kernel "
        "spreads connections over them, a connection stays with one)",
        minimum=1,
    )
    workers: int = _setting(
        "FC_WORKERS",
        0,
        "gunicorn workers; 0 = one per CPU the process may use (affinity, and the cgroup CPU quota rounded up)",
        minimum=0,
    )
    timeout: int = _setting(
        "FC_TIMEOUT",
        30,
        "seconds before a worker that does not answer (or a gRPC server without a heartbeat) is replaced",
        minimum=1,
    )
    graceful_timeout: int = _setting(
        "FC_GRACEFUL_TIMEOUT", 20, "seconds a stopping worker has to finish its requests", minimum=0
    )
    keepalive: int = _setting(
        "FC_KEEPALIVE", 5, "seconds an idle client connection stays open; 0 closes each after its response", minimum=0
    )
    request_timeout: float = _setting(
        "FC_REQUEST_TIMEOUT", 30.0, "seconds a request (head and body) may take to arrive, from its first byte"
    )
    worker_connections: int = _setting("FC_WORKER_CONNECTIONS", 1000, "open client connections per worker", minimum=1)
    max_upload_bytes: int = _setting(
        "FC_MAX_UPLOAD_BYTES", 10 * 1024 * 1024, "largest request body; larger ones get 413", minimum=1
    )
    max_batch: int = _setting("FC_MAX_BATCH", 1024, "images per request", minimum=1)
    model_name: str = _setting("FC_MODEL_NAME", "fashion", "the model's name in the /v1 and /v2 URLs")
    log_format: str = _setting(
        "FC_LOG_FORMAT",
        "text",
        "log lines of `serve`: text (gunicorn's) or json, one object a line (its fields: docs/serving.md)",
        parse=_one_of(LOG_FORMATS),
    )
    build_commit: str = _setting(
        "FC_BUILD_COMMIT",
        "unknown",
        "git commit the image was built from (the Dockerfile sets it from its "
        "REVISION build argument): the commit label of fc_build_info",
    )
    metrics_dir: Path | None = _setting(
        MULTIPROC_ENV, None, "the workers' metric files; `serve` makes a temporary one when unset", parse=_path
    )
    client_salt: str = _setting(
        "FC_CLIENT_SALT",
        "",
        "key of the hash of client addresses in the prediction log; unset = a random salt "
        "per worker process (hashes then match only within one process)",
        secret=True,
    )
    api_token: str = _setting(
        "FC_API_TOKEN",
        "",
        "bearer token guarding the prediction history and feedback; unset (and no "
        "FC_API_TOKEN_FILE) = those routes are open, as for `make run` on 127.0.0.1",
        parse=_token,
        secret=True,
    )
    api_token_file: Path | None = _setting(
        "FC_API_TOKEN_FILE",
        None,
        "a file holding the token (a mounted Secret), read again when it changes",
        parse=_path,
    )

    # --- prediction log ------------------------------------------------------------------------
    predlog: str = _setting(
        "FC_PREDLOG", "sqlite", "prediction log: sqlite (embedded), cassandra or off", parse=_one_of(PREDLOG_BACKENDS)
    )
    sqlite_path: Path = _setting(
        "FC_SQLITE_PATH", PROJECT_ROOT / "var" / "predictions.sqlite3", "the embedded log's file", parse=_path
    )
    spool_dir: Path = _setting(
        "FC_SPOOL_DIR", PROJECT_ROOT / "var" / "spool", "durable spool of rows not yet written to the log", parse=_path
    )
    queue_size: int = _setting(
        "FC_QUEUE_SIZE",
        2_000,
        "rows a worker holds in memory before spooling them; with the batches in flight, "
        "what a killed worker can lose (docs/security.md)",
        minimum=1,
    )
    cassandra_hosts: tuple[str, ...] = _setting(
        "FC_CASSANDRA_HOSTS", ("127.0.0.1",), "Cassandra contact points, comma-separated"
    )
    cassandra_port: int = _setting("FC_CASSANDRA_PORT", 9042, "Cassandra's CQL port", minimum=1)
    cassandra_keyspace: str = _setting("FC_CASSANDRA_KEYSPACE", "fashion", "keyspace of the prediction log")
    cassandra_local_dc: str = _setting("FC_CASSANDRA_LOCAL_DC", "datacenter1", "the data center to use")
    cassandra_replication: int = _setting(
        "FC_CASSANDRA_REPLICATION", 2, "replication factor `migrate` gives the keyspace", minimum=1
    )
    cassandra_username: str = _setting(
        "FC_CASSANDRA_USERNAME", "", "role to log in as (`migrate`: the admin role); unset = no authentication"
    )
    cassandra_password: str = _setting("FC_CASSANDRA_PASSWORD", "", "its password", secret=True)
    cassandra_app_username: str = _setting(
        "FC_CASSANDRA_APP_USERNAME",
        "",
        "`migrate` only: the application role it creates (SELECT and MODIFY on "
        "the keyspace) when it runs as the admin role; unset = no role management",
    )
    cassandra_app_password: str = _setting("FC_CASSANDRA_APP_PASSWORD", "", "that role's password", secret=True)
    cassandra_manage_auth: bool = _setting(
        "FC_CASSANDRA_MANAGE_AUTH",
        True,
        "`migrate` only: bootstrap its admin role from cassandra/cassandra, set "
        "system_auth's replication and disable the default superuser; false for a cluster another tool runs "
        "(K8ssandra): then it only creates the keyspace and the application role",
    )
    cassandra_tls: bool = _setting("FC_CASSANDRA_TLS", False, "connect to Cassandra over TLS")
    cassandra_ca_file: Path | None = _setting(
        "FC_CASSANDRA_CA_FILE", None, "CA certificate that verifies Cassandra's", parse=_path
    )
    cassandra_connect_timeout: float = _setting(
        "FC_CASSANDRA_CONNECT_TIMEOUT", 5.0, "seconds to connect to a Cassandra node"
    )
    cassandra_ttl_days: int = _setting(
        "FC_CASSANDRA_TTL_DAYS",
        90,
        "days a prediction row is kept (the tables' default TTL, set by `migrate`); 0 = forever",
        minimum=0,
    )

    # --- cluster operations ----------------------------------------------------------------------
    namespace: str = _setting(
        "FC_NAMESPACE", "fashion-classifier", "namespace of the release the `cluster` commands operate on"
    )
    release: str = _setting("FC_RELEASE", "fashion-classifier", "Helm release the `cluster` commands operate on")

    @classmethod
    def from_env(cls) -> Settings:
        """The settings the environment sets, the defaults for the rest; ConfigError names a bad variable."""
        values = {}
        for f in fields(cls):
            name, raw = f.metadata["env"], os.environ.get(f.metadata["env"])
            if raw is None or (raw == "" and f.metadata["parse"] is not _text):
                continue
            value = f.metadata["parse"](name, raw)
            minimum = f.metadata["minimum"]
            if minimum is not None and value < minimum:
                raise ConfigError(f"{name}={value} must be >= {minimum}")
            values[f.name] = value
        settings = cls(**values)
        if settings.metrics_port and settings.metrics_port == settings.port:
            raise ConfigError(f"FC_METRICS_PORT={settings.metrics_port} must differ from FC_PORT")
        if settings.grpc_port and settings.grpc_port in (settings.port, settings.metrics_port):
            raise ConfigError(f"FC_GRPC_PORT={settings.grpc_port} must differ from FC_PORT and FC_METRICS_PORT")
        return settings

    def describe(self) -> list[tuple[str, str]]:
        """(variable, value) pairs for display; secrets are masked."""
        return [
            (
                f.metadata["env"],
                "********" if f.metadata["secret"] and getattr(self, f.name) else _shown(getattr(self, f.name)),
            )
            for f in fields(self)
        ]

    @classmethod
    def markdown(cls) -> str:
        """The table of every variable, its default and meaning (docs/configuration.md holds a copy)."""
        rows = ["| variable | default | meaning |", "|---|---|---|"]
        for f in fields(cls):
            default = "unset" if f.default in (None, "") else f"`{_shown(f.default)}`"
            rows.append(f"| `{f.metadata['env']}` | {default} | {f.metadata['doc']} |")
        return "\n".join(rows) + "\n"


def _shown(value: Any) -> str:
    """A value as a user writes it: paths inside the project relative to it, lists comma-separated."""
    if value is None:
        return "unset"
    if isinstance(value, Path) and value.is_relative_to(PROJECT_ROOT):
        return str(value.relative_to(PROJECT_ROOT))
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)
