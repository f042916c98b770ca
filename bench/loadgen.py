"""A constant-rate (open-loop) HTTP load generator for the soak test (bench/soak.py).

wrk keeps a fixed number of connections busy (closed loop) and wrk2, which holds a rate, is not
packaged in Debian. This sends one multipart 28×28 PNG upload to ``POST /api/v1/predict`` every
``1/rate`` seconds whatever the server's latency, one TCP connection per request (the way many
clients call an API; the soak's maximum is measured the same way), and records every prediction id the
server answered, so that the soak can compare them with the rows in Cassandra one by one.
Latency is measured from the moment a request was due, not sent, so a stalled generator or
server shows up in it (no coordinated omission).

    python bench/loadgen.py --url http://127.0.0.1:8000 --png FILE --rate 1800 --duration 60 --out DIR

Writes ``DIR/loadgen.json`` (counts, achieved rate, latency percentiles, per-second timeline,
model versions seen and when, failures) and ``DIR/ids.txt`` (one answered prediction id per line).
"""

from __future__ import annotations

import argparse
import json
import resource
import selectors
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

BOUNDARY = "fcsoak5f1c9e2a"


def multipart_request(host: str, port: int, png: bytes) -> bytes:
    body = (
        (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="soak.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + png
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )
    head = (
        f"POST /api/v1/predict HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


class Generator:
    """One thread, one epoll loop, non-blocking sockets: a Python asyncio version of this cost about
    1 ms of CPU per request here (tasks, futures and transports per connection), too much on the
    two cores the server needs; this costs a fraction of that."""

    def __init__(self, url: str, png: bytes, rate: float, duration: float, timeout: float, max_inflight: int) -> None:
        parts = urlsplit(url)
        self.addr = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.payload = multipart_request(*self.addr, png)
        self.rate, self.duration, self.timeout, self.max_inflight = rate, duration, timeout, max_inflight
        self.sent = 0
        self.not_sent = 0  # due while max_inflight requests were pending: counted as failed
        self.ok_ids: list[str] = []
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.failure_count = 0
        self.failure_kinds: dict[str, int] = {}  # e.g. "recv: ConnectionResetError" -> count
        self.versions: dict[str, dict] = {}
        self.seconds: dict[int, list[int]] = {}  # second -> [answered ok, failed]
        self.second_latencies: dict[int, list[float]] = {}  # second -> latencies of its answers
        self.max_lag = 0.0
        self.send_seconds = duration

    def _fail(self, second: int, what: str) -> None:
        self.failure_count += 1
        kind = what.split(":", 1)[0] if not what.startswith("HTTP") else what[:8]
        self.failure_kinds[kind] = self.failure_kinds.get(kind, 0) + 1
        self.seconds.setdefault(second, [0, 0])[1] += 1
        if len(self.failures) < 50:
            self.failures.append(f"t={second}s {what}")

    def _answer(self, raw: bytes, due: float, now: float, t0: float) -> None:
        second = int(due - t0)
        head, _, body = raw.partition(b"\r\n\r\n")
        status = head[9:12]
        if status != b"200":
            self._fail(second, f"HTTP {status.decode(errors='replace') or '(no answer)'}: {body[:200]!r}")
            return
        try:
            answer = json.loads(body)
            pid = answer["predictions"][0]["prediction_id"]
            version = answer["model_version"]
        except (ValueError, KeyError, IndexError) as exc:
            self._fail(second, f"unreadable answer ({exc}): {body[:200]!r}")
            return
        self.ok_ids.append(pid)
        self.latencies.append(now - due)
        self.second_latencies.setdefault(second, []).append(now - due)
        self.seconds.setdefault(second, [0, 0])[0] += 1
        seen = self.versions.setdefault(version, {"first_s": round(due - t0, 3), "count": 0})
        seen["count"] += 1

    def run(self) -> None:
        sel = selectors.EpollSelector()
        pending: dict[int, list] = {}  # fd -> [socket, due, chunks, sent]
        total = int(self.rate * self.duration)
        clock = time.monotonic
        t0 = clock() + 0.05
        i = 0
        next_timeout_check = t0
        while i < total or pending:
            now = clock()
            while i < total and t0 + i / self.rate <= now:
                due = t0 + i / self.rate
                i += 1
                self.max_lag = max(self.max_lag, now - due)
                if len(pending) >= self.max_inflight:
                    self.not_sent += 1
                    continue
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.connect_ex(self.addr)
                pending[sock.fileno()] = [sock, due, [], False]
                sel.register(sock, selectors.EVENT_WRITE)
                self.sent += 1
            if i == total and self.sent and self.send_seconds == self.duration:
                self.send_seconds = now - t0
            wait = (t0 + i / self.rate - clock()) if i < total else 0.1
            for key, _events in sel.select(max(0.0, min(wait, 0.1))):
                entry = pending[key.fd]
                sock = entry[0]
                if not entry[3]:  # connected (or failed): send the whole request, then read
                    try:
                        sock.sendall(self.payload)
                    except OSError as exc:
                        self._close(sel, pending, key.fd)
                        self._fail(int(entry[1] - t0), f"send {type(exc).__name__}: {exc}")
                        continue
                    entry[3] = True
                    sel.modify(sock, selectors.EVENT_READ)
                    continue
                try:
                    data = sock.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as exc:
                    self._close(sel, pending, key.fd)
                    self._fail(int(entry[1] - t0), f"recv {type(exc).__name__}: {exc}")
                    continue
                if data:
                    entry[2].append(data)
                    continue
                self._close(sel, pending, key.fd)  # the server closed: the answer is complete
                self._answer(b"".join(entry[2]), entry[1], clock(), t0)
            now = clock()
            if now >= next_timeout_check:
                next_timeout_check = now + 0.5
                for fd in [fd for fd, e in pending.items() if now - e[1] > self.timeout]:
                    due = pending[fd][1]
                    self._close(sel, pending, fd)
                    self._fail(int(due - t0), f"timeout: no answer within {self.timeout:.0f} s")
        sel.close()

    @staticmethod
    def _close(sel: selectors.BaseSelector, pending: dict, fd: int) -> None:
        sock = pending.pop(fd)[0]
        sel.unregister(sock)
        sock.close()

    def _second_latency(self, second: int) -> dict[str, float]:
        lat = self.second_latencies.get(second)
        if not lat:
            return {}
        p50, p99 = np.percentile(np.asarray(lat) * 1000, (50, 99))
        return {"p50_ms": round(float(p50), 1), "p99_ms": round(float(p99), 1)}

    def report(self, cpu_seconds: float) -> dict:
        lat = np.asarray(self.latencies) * 1000 if self.latencies else np.zeros(1)
        return {
            "target_rate": self.rate,
            "duration_s": self.duration,
            "planned": int(self.rate * self.duration),
            "sent": self.sent,
            "not_sent": self.not_sent,
            # The generator's own pacing (what it sent or tried to) vs what the server absorbed.
            "paced_rate": round((self.sent + self.not_sent) / self.send_seconds, 1),
            "achieved_rate": round(self.sent / self.send_seconds, 1),
            "max_schedule_lag_ms": round(self.max_lag * 1000, 2),
            "ok": len(self.ok_ids),
            "failed": self.failure_count,
            "failure_kinds": self.failure_kinds,
            "failures": self.failures,  # the first 50
            "latency_ms": {
                p: round(float(np.percentile(lat, q)), 2)
                for p, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9), ("max", 100))
            },
            "versions": self.versions,
            # Per second of due time: when the server fell behind, and for how long.
            "timeline": [
                {"s": s, "ok": v[0], "failed": v[1], **self._second_latency(s)} for s, v in sorted(self.seconds.items())
            ],
            "generator_cpu_share": round(cpu_seconds / self.send_seconds, 3),
        }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Constant-rate upload load (see the module docstring).")
    p.add_argument("--url", required=True)
    p.add_argument("--png", type=Path, required=True)
    p.add_argument("--rate", type=float, required=True, help="requests per second")
    p.add_argument("--duration", type=float, required=True, help="seconds of sending")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per request before it counts as failed")
    # High, so that a server stalled for seconds (a Cassandra node booting on the same 2 cores)
    # shows as latency (connections wait in the listen backlog or retry their SYN), not as drops.
    p.add_argument("--max-inflight", type=int, default=15000)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    # One descriptor per pending request: a stalled server can hold many at once.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, args.max_inflight + 100)), hard))
    gen = Generator(args.url, args.png.read_bytes(), args.rate, args.duration, args.timeout, args.max_inflight)
    cpu0 = time.process_time()
    gen.run()
    report = gen.report(time.process_time() - cpu0)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ids.txt").write_text("".join(f"{i}\n" for i in gen.ok_ids))
    (args.out / "loadgen.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: v for k, v in report.items() if k not in ("timeline", "failures")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
