"""All settings, read from environment variables with documented defaults.

Every other module takes a :class:`Settings` (or one of its values) instead of reading the
environment itself, so one place documents the whole configuration surface. ``fashion-classifier
config`` prints the effective values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path

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


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def _int(name: str, default: int, minimum: int | None = None) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={value} must be >= {minimum}")
    return value


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


def _bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in ("1", "true", "yes", "on"):
        return True
    if raw.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true/false)")


def _list(name: str, default: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in _env(name, default).split(",") if part.strip())


def _path(name: str, default: Path | None) -> Path | None:
    raw = os.environ.get(name)
    if raw:
        return Path(raw).expanduser()
    return default


@dataclass(frozen=True)
class Settings:
    """Effective configuration. Field docs name the environment variable and its default."""

    # --- data and training -------------------------------------------------------------
    data_dir: Path | None = None  # FC_DATA_DIR; unset = download with keras.datasets
    seed: int = 42  # FC_SEED
    epochs: int = 0  # FC_EPOCHS; 0 = the architecture's default (compact 24, cnn and mlp 15)
    batch_size: int = 0  # FC_BATCH_SIZE; 0 = the architecture's default (mlp 32, compact and cnn 64)

    # --- model store ---------------------------------------------------------------------
    model_dir: Path = DEFAULT_MODEL_DIR  # FC_MODEL_DIR; the versioned artifact store
    keep_versions: int = 5  # FC_KEEP_VERSIONS; retention count when publishing
    reload_interval: float = 2.0  # FC_RELOAD_INTERVAL seconds between checks for a new version

    # --- serving ---------------------------------------------------------------------------
    host: str = "127.0.0.1"  # FC_HOST
    port: int = 8000  # FC_PORT
    # FC_METRICS_PORT: the gunicorn master serves the workers' summed metrics at /metrics on
    # this port (same host as FC_PORT), never on the app's port; 0 = not served at all
    metrics_port: int = 9464
    workers: int = 0  # FC_WORKERS; 0 = one per CPU core
    timeout: int = 30  # FC_TIMEOUT gunicorn worker timeout (s)
    graceful_timeout: int = 20  # FC_GRACEFUL_TIMEOUT (s)
    # FC_KEEPALIVE seconds an idle client connection stays open; 0 closes each connection
    # after its response
    keepalive: int = 5
    # FC_REQUEST_TIMEOUT seconds a request (head and body) may take to arrive, from its first byte
    request_timeout: float = 30.0
    worker_connections: int = 1000  # FC_WORKER_CONNECTIONS open client connections per worker
    max_upload_bytes: int = 10 * 1024 * 1024  # FC_MAX_UPLOAD_BYTES; larger bodies get 413
    max_batch: int = 1024  # FC_MAX_BATCH images per request
    model_name: str = "fashion"  # FC_MODEL_NAME used in /v1 and /v2 URLs
    metrics_dir: Path | None = None  # PROMETHEUS_MULTIPROC_DIR; set by `serve` when unset
    # FC_CLIENT_SALT keys the hash of client addresses in the prediction log; unset = a random
    # salt per worker process (hashes then only match within one process)
    client_salt: str = field(default="", repr=False)
    # FC_API_TOKEN: the bearer token that guards the prediction history and /api/v1/feedback;
    # unset (and no FC_API_TOKEN_FILE) = those routes are open, as for `make run` on 127.0.0.1
    api_token: str = field(default="", repr=False)
    # FC_API_TOKEN_FILE: a file holding the token (a mounted Secret), re-read when it changes
    api_token_file: Path | None = None

    # --- prediction log ------------------------------------------------------------------------
    # FC_PREDLOG: "sqlite" (embedded default), "cassandra", or "off"
    predlog: str = "sqlite"
    sqlite_path: Path = PROJECT_ROOT / "var" / "predictions.sqlite3"  # FC_SQLITE_PATH
    spool_dir: Path = PROJECT_ROOT / "var" / "spool"  # FC_SPOOL_DIR durable spool for unsent rows
    # FC_QUEUE_SIZE in-memory rows before spilling to the spool. With the batches in flight, the
    # rows a SIGKILLed worker can lose (docs/security.md): 2,000 + 2 × 1,000 with Cassandra.
    queue_size: int = 2_000
    cassandra_hosts: tuple[str, ...] = ("127.0.0.1",)  # FC_CASSANDRA_HOSTS comma-separated
    cassandra_port: int = 9042  # FC_CASSANDRA_PORT
    cassandra_keyspace: str = "fashion"  # FC_CASSANDRA_KEYSPACE
    cassandra_local_dc: str = "datacenter1"  # FC_CASSANDRA_LOCAL_DC
    cassandra_replication: int = 2  # FC_CASSANDRA_REPLICATION factor used by `migrate`
    cassandra_username: str = ""  # FC_CASSANDRA_USERNAME (PasswordAuthenticator when set)
    cassandra_password: str = field(default="", repr=False)  # FC_CASSANDRA_PASSWORD
    # FC_CASSANDRA_APP_USERNAME / _PASSWORD: the application role `migrate` creates (SELECT and
    # MODIFY on the keyspace only) when it runs as the admin role; unset = no role management
    cassandra_app_username: str = ""
    cassandra_app_password: str = field(default="", repr=False)
    cassandra_tls: bool = False  # FC_CASSANDRA_TLS
    cassandra_ca_file: Path | None = None  # FC_CASSANDRA_CA_FILE to verify the server
    cassandra_connect_timeout: float = 5.0  # FC_CASSANDRA_CONNECT_TIMEOUT (s)
    cassandra_ttl_days: int = 90  # FC_CASSANDRA_TTL_DAYS default TTL of prediction rows

    # --- cluster operations ----------------------------------------------------------------------
    namespace: str = "fashion-classifier"  # FC_NAMESPACE
    release: str = "fashion-classifier"  # FC_RELEASE Helm release name

    @classmethod
    def from_env(cls) -> Settings:
        predlog = _env("FC_PREDLOG", "sqlite").lower()
        if predlog not in ("sqlite", "cassandra", "off"):
            raise ConfigError(f"FC_PREDLOG={predlog!r} must be one of sqlite, cassandra, off")
        port, metrics_port = _int("FC_PORT", 8000, minimum=0), _int("FC_METRICS_PORT", 9464, minimum=0)
        if metrics_port and metrics_port == port:
            raise ConfigError(f"FC_METRICS_PORT={metrics_port} must differ from FC_PORT")
        return cls(
            data_dir=_path("FC_DATA_DIR", None),
            seed=_int("FC_SEED", 42),
            epochs=_int("FC_EPOCHS", 0, minimum=0),
            batch_size=_int("FC_BATCH_SIZE", 0, minimum=0),
            model_dir=_path("FC_MODEL_DIR", DEFAULT_MODEL_DIR) or DEFAULT_MODEL_DIR,
            keep_versions=_int("FC_KEEP_VERSIONS", 5, minimum=1),
            reload_interval=_float("FC_RELOAD_INTERVAL", 2.0),
            host=_env("FC_HOST", "127.0.0.1"),
            port=port,
            metrics_port=metrics_port,
            workers=_int("FC_WORKERS", 0, minimum=0),
            timeout=_int("FC_TIMEOUT", 30, minimum=1),
            graceful_timeout=_int("FC_GRACEFUL_TIMEOUT", 20, minimum=0),
            keepalive=_int("FC_KEEPALIVE", 5, minimum=0),
            request_timeout=_float("FC_REQUEST_TIMEOUT", 30.0),
            worker_connections=_int("FC_WORKER_CONNECTIONS", 1000, minimum=1),
            max_upload_bytes=_int("FC_MAX_UPLOAD_BYTES", 10 * 1024 * 1024, minimum=1),
            max_batch=_int("FC_MAX_BATCH", 1024, minimum=1),
            model_name=_env("FC_MODEL_NAME", "fashion"),
            metrics_dir=_path("PROMETHEUS_MULTIPROC_DIR", None),
            client_salt=_env("FC_CLIENT_SALT", ""),
            api_token=_env("FC_API_TOKEN", "").strip(),
            api_token_file=_path("FC_API_TOKEN_FILE", None),
            predlog=predlog,
            sqlite_path=_path("FC_SQLITE_PATH", Settings.sqlite_path) or Settings.sqlite_path,
            spool_dir=_path("FC_SPOOL_DIR", Settings.spool_dir) or Settings.spool_dir,
            queue_size=_int("FC_QUEUE_SIZE", 2_000, minimum=1),
            cassandra_hosts=_list("FC_CASSANDRA_HOSTS", "127.0.0.1"),
            cassandra_port=_int("FC_CASSANDRA_PORT", 9042, minimum=1),
            cassandra_keyspace=_env("FC_CASSANDRA_KEYSPACE", "fashion"),
            cassandra_local_dc=_env("FC_CASSANDRA_LOCAL_DC", "datacenter1"),
            cassandra_replication=_int("FC_CASSANDRA_REPLICATION", 2, minimum=1),
            cassandra_username=_env("FC_CASSANDRA_USERNAME", ""),
            cassandra_password=_env("FC_CASSANDRA_PASSWORD", ""),
            cassandra_app_username=_env("FC_CASSANDRA_APP_USERNAME", ""),
            cassandra_app_password=_env("FC_CASSANDRA_APP_PASSWORD", ""),
            cassandra_tls=_bool("FC_CASSANDRA_TLS", False),
            cassandra_ca_file=_path("FC_CASSANDRA_CA_FILE", None),
            cassandra_connect_timeout=_float("FC_CASSANDRA_CONNECT_TIMEOUT", 5.0),
            cassandra_ttl_days=_int("FC_CASSANDRA_TTL_DAYS", 90, minimum=0),
            namespace=_env("FC_NAMESPACE", "fashion-classifier"),
            release=_env("FC_RELEASE", "fashion-classifier"),
        )

    def describe(self) -> list[tuple[str, str]]:
        """(name, value) pairs for display; secrets are masked."""
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("cassandra_password", "cassandra_app_password", "client_salt", "api_token") and value:
                value = "********"
            out.append((f.name, str(value)))
        return out
