"""Prometheus metrics of the prediction log (names are a contract with alerts and dashboards).

Multiprocess-safe: under gunicorn, ``PROMETHEUS_MULTIPROC_DIR`` is set before this module is
imported, counters are summed across workers and each gauge states how workers combine.
"""

from __future__ import annotations

from pathlib import Path

from prometheus_client import Counter, Gauge

QUEUE_DEPTH = Gauge(
    "fc_predlog_queue_depth",
    "Prediction-log rows waiting in memory to be written",
    multiprocess_mode="livesum",
)
SPOOL_ROWS = Gauge(
    "fc_predlog_spool_rows",
    "Rows in the durable local spool, waiting for replay",
    multiprocess_mode="livesum",
)
SPOOL_BYTES = Gauge(
    "fc_predlog_spool_bytes",
    "Bytes of the durable local spool files held by live workers",
    multiprocess_mode="livesum",
)
# A worker that is not connected cannot write, so the minimum is what alerts should see.
CONNECTED = Gauge(
    "fc_predlog_connected",
    "1 when the prediction-log backend session is up (minimum over workers)",
    multiprocess_mode="livemin",
)
# Rows queued or being written, not yet in the backend or the spool: what a SIGKILL (an OOM kill,
# gunicorn's timeout) would lose. A worker that exits normally writes or spools them first.
_IN_MEMORY = "fc_predlog_rows_in_memory"
IN_MEMORY = Gauge(
    _IN_MEMORY,
    "Prediction-log rows held in a worker's memory (queued or being written), lost if it is killed",
    multiprocess_mode="livesum",
)
LOST = Counter(
    "fc_predlog_lost_rows",
    "Rows that workers held in memory when they died without writing or spooling them",
)
WRITTEN = Counter("fc_predlog_written_rows", "Rows written to the prediction-log backend")
WRITE_ERRORS = Counter("fc_predlog_write_errors", "Failed writes to the prediction-log backend (rows)")
SPOOLED = Counter("fc_predlog_spooled_rows", "Rows written to the durable local spool")
REPLAYED = Counter("fc_predlog_replayed_rows", "Spooled rows replayed into the backend")


def count_lost_rows(pid: int, metrics_dir: Path) -> int:
    """The rows a dead worker still held in memory, added to ``fc_predlog_lost_rows_total``.

    Called by the gunicorn master when a worker has exited, before its live gauges are dropped:
    a worker that exited normally has written or spooled everything (0 left).
    """
    from prometheus_client.multiprocess import MultiProcessCollector

    files = [str(path) for path in Path(metrics_dir).glob(f"gauge_livesum_{pid}.db")]
    held = sum(
        sample.value
        for metric in MultiProcessCollector.merge(files, accumulate=False)
        if metric.name == _IN_MEMORY
        for sample in metric.samples
    )
    lost = max(0, round(held))
    if lost:
        LOST.inc(lost)
    return lost
