"""Start a real HTTP server process, wait until it is ready, inspect its workers, stop it.

The server runs in a new session (its own process group), so stopping it ends exactly the
processes it started: the command, the gunicorn master and its workers.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from harness.ports import free_port, free_ports

READY_PATH = "/v2/health/ready"


class ServerError(RuntimeError):
    """The server did not start, died, or did not become ready; the message has its log tail."""


def serve_command() -> list[str]:
    """``fashion-classifier serve`` from the interpreter's own environment."""
    script = Path(sys.executable).with_name("fashion-classifier")
    if script.is_file():
        return [str(script), "serve"]
    return [sys.executable, "-m", "fashion_classifier.cli", "serve"]


def serve_env(
    workdir: Path,
    model_dir: Path,
    *,
    port: int,
    workers: int = 2,
    predlog: str = "sqlite",
    extra: dict[str, str] | None = None,
    metrics_port: int | None = None,
) -> dict[str, str]:
    """Environment for ``fashion-classifier serve`` with every writable path inside ``workdir``.

    The metrics port is a free one unless given (0 = no metrics port): never the default, which
    two servers on one machine would both try to bind.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    metrics_dir = workdir / "prometheus-multiproc"
    metrics_dir.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FC_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(
        FC_HOST="127.0.0.1",
        FC_PORT=str(port),
        # Not the app's port, which a port picked now could be (the OS may hand a released one out again).
        FC_METRICS_PORT=str(next(p for p in free_ports(2) if p != port) if metrics_port is None else metrics_port),
        FC_WORKERS=str(workers),
        FC_MODEL_DIR=str(model_dir),
        FC_PREDLOG=predlog,
        FC_SQLITE_PATH=str(workdir / "predictions.sqlite3"),
        FC_SPOOL_DIR=str(workdir / "spool"),
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    return env


def children(pid: int) -> list[int]:
    """Child pids of every thread of ``pid`` (a thread's own children are listed under its task)."""
    kids: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return kids
    for tid in tasks:
        try:
            kids.extend(int(x) for x in Path(f"/proc/{pid}/task/{tid}/children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return kids


def leaf_descendants(pid: int) -> list[int]:
    """Descendants without children of their own: the gunicorn workers under any wrapper."""
    leaves, stack = [], children(pid)
    while stack:
        child = stack.pop()
        grandchildren = children(child)
        if grandchildren:
            stack.extend(grandchildren)
        else:
            leaves.append(child)
    return sorted(leaves)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise ServerError(f"no VmRSS for pid {pid}")


def pss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise ServerError(f"no Pss for pid {pid}")


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """Status code of a GET, or None when nothing answered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
        return None


@dataclass
class ServerProcess:
    """One server command listening on ``host:port``; use as a context manager or start()/stop()."""

    command: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    host: str = "127.0.0.1"
    ready_path: str = READY_PATH
    proc: subprocess.Popen | None = field(default=None, init=False)
    ready_seconds: float | None = field(default=None, init=False)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def metrics_url(self) -> str:
        """``/metrics`` on the metrics port the gunicorn master serves (``FC_METRICS_PORT``)."""
        port = int(self.env.get("FC_METRICS_PORT") or 0)
        if not port:
            raise ServerError("this server has no metrics port (FC_METRICS_PORT unset or 0)")
        return f"http://{self.host}:{port}/metrics"

    def start(self, timeout: float = 60.0, workers: int | None = None) -> ServerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        started = time.monotonic()
        try:
            self.proc = subprocess.Popen(
                self.command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        try:
            self._wait_ready(started, timeout)
            if workers:
                self.wait_workers(workers, timeout=max(1.0, timeout - (time.monotonic() - started)))
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, started: float, timeout: float) -> None:
        url = self.base_url + self.ready_path
        while time.monotonic() - started < timeout:
            if self.proc.poll() is not None:
                raise ServerError(f"{self.command} exited with {self.proc.returncode}:\n{self.log_tail()}")
            if http_status(url, timeout=1.0) == 200:
                self.ready_seconds = time.monotonic() - started
                return
            time.sleep(0.02)
        raise ServerError(f"{url} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def wait_workers(self, count: int, timeout: float = 30.0) -> list[int]:
        """Wait until ``count`` workers exist and readiness answers 200 repeatedly (all booted)."""
        deadline = time.monotonic() + timeout
        url = self.base_url + self.ready_path
        while time.monotonic() < deadline:
            pids = self.worker_pids()
            if len(pids) >= count and all(http_status(url) == 200 for _ in range(4 * count)):
                return pids
            time.sleep(0.05)
        raise ServerError(f"{count} ready workers not seen within {timeout:.0f} s:\n{self.log_tail()}")

    def worker_pids(self) -> list[int]:
        if self.proc is None:
            return []
        return leaf_descendants(self.proc.pid)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``timeout``; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        pgid = self.proc.pid  # start_new_session made the command its group leader
        try:
            os.killpg(pgid, signal.SIGTERM)
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            return self.proc.wait(timeout=5)
        except ProcessLookupError:
            return self.proc.wait(timeout=5)
        finally:
            self._reap_group(pgid)

    @staticmethod
    def _reap_group(pgid: int) -> None:
        # Workers that outlive their master (e.g. after SIGKILL) stay in the group: end them too.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)

    def __enter__(self) -> ServerProcess:
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_serve(
    workdir: Path,
    model_dir: Path,
    *,
    workers: int = 2,
    predlog: str = "sqlite",
    extra_env: dict[str, str] | None = None,
    timeout: float = 60.0,
) -> ServerProcess:
    """A ready ``fashion-classifier serve`` with all its workers booted."""
    port = free_port()
    env = serve_env(workdir, model_dir, port=port, workers=workers, predlog=predlog, extra=extra_env)
    server = ServerProcess(serve_command(), env, port, workdir / "serve.log")
    return server.start(timeout=timeout, workers=workers)
