"""The gunicorn master's keeper of the gRPC server processes (``server``).

``start`` runs FC_GRPC_WORKERS processes of ``python -m fashion_classifier.oip_grpc`` (fresh
interpreters: the master has threads, which a fork would not carry) and waits until each serves,
or raises: a gRPC server that cannot start (port taken, bad settings) stops ``serve`` at startup,
as a taken HTTP port does. Several processes share the port with SO_REUSEPORT (the kernel spreads
connections over them), so the port is first checked to be free here. A thread per process then
restarts it whenever it exits, with a backoff, and hands a dead process to ``forget`` (the
master's treatment of a dead worker: its lost rows counted, its live gauges dropped). The master's
stop signals are passed on to the processes at once, so they finish their calls while the workers
finish theirs; ``stop`` waits for them.

A serving process writes a heartbeat byte to its pipe every second from its event loop. One that
sends none for STALE seconds counts as not serving (``server.grpc_status``: the pod's readiness
fails while none serves); one silent for FC_TIMEOUT seconds (at least STALE) is hung (a call that never returns,
a deadlock) and is killed, then restarted like a process that died, as gunicorn does with a
worker that stops answering.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from fashion_classifier.server import grpc_status

# The pipe's write end, in the server's environment: it writes one byte there once it serves.
READY_FD_ENV = "FC_GRPC_READY_FD"
HEARTBEAT_INTERVAL = 1.0  # s between the heartbeat bytes a serving process writes on that pipe
# The signals that stop gunicorn's master (TERM: gracefully; INT, QUIT: at once).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT)
STARTUP_TIMEOUT = 60.0  # s for a process to load the model and bind the port
# s a stopping process may take beyond FC_GRACEFUL_TIMEOUT: its serving state's close (the reload
# thread, then the prediction log's flush to the backend or the spool)
CLOSE_TIME = 20.0
BACKOFF = (1.0, 30.0)  # s before a restart: the first, doubling up to the last...
STEADY = 60.0  # ...and back to the first once a process has served this long
STALE = 5.0  # s without a heartbeat (5 intervals) before a process counts as not serving
COMMAND = [sys.executable, "-m", "fashion_classifier.oip_grpc"]


class StartError(RuntimeError):
    pass


class GrpcSupervisor:
    def __init__(
        self,
        processes: int,
        host: str,
        port: int,
        log: logging.Logger,
        forget: Callable[[int], None],
        *,
        timeout: float,
        status_dir: str | Path,
    ) -> None:
        self._count = processes
        self._address = (host, port)
        self._log = log
        self._forget = forget  # called with a dead process's pid, as child_exit is for a worker
        # s without a heartbeat before a process is killed as hung: never below STALE, so that a
        # late beat or two (a busy machine, a long call) cannot kill a healthy process.
        self._timeout = max(timeout, STALE)
        self._status_dir = status_dir
        self._procs: list[subprocess.Popen] = []
        self._beats: list[int] = []  # per slot: the read end of its process's pipe
        self._serving: list[bool] = [False] * processes
        self._serving_lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._terminated: set[int] = set()  # pids sent SIGTERM

    def start(self) -> GrpcSupervisor:
        """Start the servers and their watch; call from the master's main thread (signal handlers)."""
        check_port_free(*self._address)
        launched = [self._launch() for _ in range(self._count)]
        self._procs = [proc for proc, _ in launched]
        self._beats = [read for _, read in launched]
        try:
            for proc, read in launched:
                self._await_ready(proc, read)
        except StartError:
            for proc, read in launched:
                self._end(proc, timeout=5.0)
                os.close(read)
            raise
        for slot in range(self._count):
            self._set_serving(slot, True)
            thread = threading.Thread(target=self._watch, args=(slot,), name=f"grpc-supervisor-{slot}", daemon=True)
            thread.start()
            self._threads.append(thread)
        for sig in STOP_SIGNALS:
            self._chain(sig)
        return self

    def _chain(self, sig: signal.Signals) -> None:
        """Pass a stop signal of the master on to the servers (and restart none of them after it)."""
        previous = signal.getsignal(sig)
        if not callable(previous):
            return

        def handler(signum: int, frame: object) -> None:
            self._stopping.set()
            for proc in self._procs:
                self._terminate(proc)
            previous(signum, frame)

        signal.signal(sig, handler)

    def _launch(self) -> tuple[subprocess.Popen, int]:
        """A new server process and the read end of the pipe it signals readiness on."""
        read, write = os.pipe()
        try:
            proc = subprocess.Popen(COMMAND, env={**os.environ, READY_FD_ENV: str(write)}, pass_fds=(write,))
        except BaseException:
            os.close(read)
            raise
        finally:
            os.close(write)  # the child holds the only write end: EOF here when it dies
        return proc, read

    def _await_ready(self, proc: subprocess.Popen, read: int) -> None:
        """Return once ``proc`` serves; StartError if it exits or hangs first. Its exit is polled
        too: a worker forked meanwhile may hold a copy of the pipe's write end (no EOF then). The
        pipe stays open: the heartbeats come on it."""
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            ready, _, _ = select.select([read], [], [], 0.5)
            if ready:
                if os.read(read, 1) == b"1":
                    return
                break  # EOF: it exited
        if proc.poll() is None and time.monotonic() >= deadline:
            self._end(proc, timeout=5.0)
            raise StartError(f"the gRPC server (pid {proc.pid}) did not start within {STARTUP_TIMEOUT:.0f} s")
        proc.wait()
        raise StartError(f"the gRPC server exited at startup (status {proc.returncode}); its log says why")

    def _watch(self, slot: int) -> None:
        delay = BACKOFF[0]
        while not self._stopping.is_set():
            try:
                delay = self._keep(slot, delay)
            except Exception:  # noqa: BLE001 - fork failing (pids limit, memory): try again later
                self._log.exception("restarting a gRPC server failed; trying again in %.0f s", delay)
                if self._stopping.wait(delay):
                    return
                delay = min(delay * 2, BACKOFF[1])

    def _keep(self, slot: int, delay: float) -> float:
        """Wait for the slot's process to exit and start another; the next backoff delay."""
        proc = self._procs[slot]
        started = time.monotonic()
        self._heed(slot, proc)
        read, self._beats[slot] = self._beats[slot], -1
        if read >= 0:  # -1: closed already, and no new process since (a failed launch)
            os.close(read)
        proc.wait()  # gunicorn's master may reap it first: then the status reads 0
        self._set_serving(slot, False)
        self._forget(proc.pid)
        # Ctrl-C reaches the whole process group: a server may end a moment before the master's
        # own handler has said that everything is stopping.
        if self._stopping.wait(0.5):
            return delay
        if time.monotonic() - started >= STEADY:
            delay = BACKOFF[0]
        self._log.error(
            "the gRPC server (pid %s) exited (status %s); restarting in %.0f s", proc.pid, proc.returncode, delay
        )
        if self._stopping.wait(delay):
            return delay
        new, read = self._launch()
        self._procs[slot], self._beats[slot] = new, read
        try:
            self._await_ready(new, read)
        except StartError as exc:
            self._log.error("%s", exc)  # it has exited or was ended: the next _keep restarts it
        else:
            self._log.info("the gRPC server restarted (pid %s)", new.pid)
            self._set_serving(slot, True)
            if self._stopping.is_set():  # stop() came while it started
                self._end(new, timeout=5.0)
        return min(delay * 2, BACKOFF[1])

    def _heed(self, slot: int, proc: subprocess.Popen) -> None:
        """Read the process's heartbeats until it exits; mark it not serving while they are late,
        and kill it once they are FC_TIMEOUT late (unless everything is stopping: a stopping
        process beats no more, and ``stop`` bounds its exit)."""
        read = self._beats[slot]
        last = time.monotonic()
        while read >= 0 and proc.poll() is None:
            ready, _, _ = select.select([read], [], [], HEARTBEAT_INTERVAL)
            now = time.monotonic()
            if ready:
                if not os.read(read, 4096):  # EOF: it exited
                    return
                last = now
                self._set_serving(slot, True)
                continue
            if now - last >= STALE:
                self._set_serving(slot, False)
            if now - last >= self._timeout and not self._stopping.is_set():
                self._log.error(
                    "the gRPC server (pid %s) sent no heartbeat for %.0f s; killing it", proc.pid, now - last
                )
                proc.kill()
                return

    def _set_serving(self, slot: int, serving: bool) -> None:
        """Record whether the slot's process serves; the count of serving ones goes to the file
        the workers' readiness reads."""
        with self._serving_lock:
            # Stopping: readiness no longer matters, and on_exit may be removing the directory.
            if self._serving[slot] == serving or self._stopping.is_set():
                return
            self._serving[slot] = serving
            grpc_status.write(self._status_dir, sum(self._serving))
        if not serving and self._procs[slot].poll() is None:
            self._log.warning("the gRPC server (pid %s) sent no heartbeat for %.0f s", self._procs[slot].pid, STALE)

    def stop(self, timeout: float) -> None:
        """Let the servers finish their calls within ``timeout`` (SIGTERM) and close their serving
        state within CLOSE_TIME more, then kill them."""
        self._stopping.set()
        for proc in self._procs:
            self._terminate(proc)
        deadline = time.monotonic() + timeout + CLOSE_TIME
        for proc in self._procs:
            self._end(proc, timeout=max(0.0, deadline - time.monotonic()))
        for thread in self._threads:
            thread.join(timeout=5.0)

    def _terminate(self, proc: subprocess.Popen) -> None:
        """SIGTERM, once: the process ignores more once it is closing, but a signal is no request twice."""
        if proc.pid not in self._terminated and proc.poll() is None:
            self._terminated.add(proc.pid)
            proc.send_signal(signal.SIGTERM)

    def _end(self, proc: subprocess.Popen, timeout: float) -> None:
        self._terminate(proc)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def check_port_free(host: str, port: int) -> None:
    """StartError when something listens on ``host:port``: the servers bind it with SO_REUSEPORT,
    which would share a port another server of this user bound the same way instead of failing."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StartError(f"the port is taken ({exc.strerror})") from None
