"""Prometheus metrics of the prediction log (names are a contract with alerts and dashboards).

Multiprocess-safe: under gunicorn, ``PROMETHEUS_MULTIPROC_DIR`` is set before this module is
imported, counters are summed across workers and each gauge states how workers combine.
"""

from __future__ import annotations

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
WRITTEN = Counter("fc_predlog_written_rows", "Rows written to the prediction-log backend")
WRITE_ERRORS = Counter("fc_predlog_write_errors", "Failed writes to the prediction-log backend (rows)")
SPOOLED = Counter("fc_predlog_spooled_rows", "Rows written to the durable local spool")
REPLAYED = Counter("fc_predlog_replayed_rows", "Spooled rows replayed into the backend")
