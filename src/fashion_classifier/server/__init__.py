"""The serving processes around the Flask app (``web``): gunicorn's master and workers.

``gunicorn_conf`` configures gunicorn and its hooks; ``runtime`` prepares the process before
anything heavy is imported. Each worker runs ``keepalive_worker.KeepAliveWorker``: an event
loop (``keepalive_worker``) that reads requests without blocking (``request_reading``, framed
by ``framing``) and writes the app's responses (``response_writing``); ``protocol_errors``
answers in JSON what gunicorn's own parser refuses. The master serves the summed metrics
(``metrics_server``) and, with ``FC_LOG_FORMAT=json``, logs JSON lines (``json_logging``,
``stderr_relay``).

Nothing heavy at import time: the gunicorn master imports this package before
``PROMETHEUS_MULTIPROC_DIR`` is set and forks every worker from it.
"""
