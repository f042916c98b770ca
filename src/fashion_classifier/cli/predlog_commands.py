"""Prediction-log commands: migrate (schema) and history (recent rows as a table)."""

from __future__ import annotations

import argparse
import json

from fashion_classifier.cli import EXIT_UNAVAILABLE, EXIT_USAGE, CliError, argtypes
from fashion_classifier.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "migrate",
        help="create or update the prediction-log schema (idempotent)",
        description="Apply the versioned prediction-log schema to the configured backend "
        "(FC_PREDLOG): the Cassandra keyspace and tables, or the SQLite file.",
    )
    p.add_argument(
        "--wait",
        type=argtypes.seconds(),
        default=60.0,
        help="seconds to keep trying while Cassandra is not reachable yet or a schema change fails "
        "on a transient error (default: 60)",
    )
    p.set_defaults(handler=cmd_migrate)

    p = sub.add_parser(
        "history",
        help="print recent predictions as a table",
        description="Print the newest logged predictions (or one UTC day's) from the configured backend.",
    )
    p.add_argument("--day", type=argtypes.day, help="one UTC day, YYYY-MM-DD (default: the newest rows of any day)")
    p.add_argument("--limit", type=argtypes.whole_number(1, 10_000), default=20, help="rows to print (default: 20)")
    p.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    p.add_argument(
        "--wait", type=argtypes.seconds(), default=10.0, help="seconds to wait for Cassandra to connect (default: 10)"
    )
    p.set_defaults(handler=cmd_history)


def cmd_migrate(args: argparse.Namespace) -> int:
    from fashion_classifier import predlog

    try:
        applied, target = predlog.migrate(Settings.from_env(), args.wait)
    except predlog.MigrationFailed as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE if exc.unavailable else EXIT_USAGE) from None
    if applied:
        print(f"{target}: applied migration(s) {', '.join(map(str, applied))}")
    else:
        print(f"{target}: schema up to date")
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from fashion_classifier.predlog import InvalidPageState, PredictionLogUnavailable, open_log, when_available

    settings = Settings.from_env()
    if settings.predlog == "off":
        raise CliError("FC_PREDLOG=off: predictions are not logged", EXIT_USAGE)
    log = open_log(settings)
    try:
        rows = when_available(
            lambda: log.list_day(args.day, args.limit).rows if args.day else log.recent(args.limit), args.wait
        )
    except PredictionLogUnavailable as exc:
        raise CliError(f"prediction log unavailable: {exc}", EXIT_UNAVAILABLE) from None
    except InvalidPageState as exc:  # not expected without a token, but never a traceback
        raise CliError(str(exc)) from None
    finally:
        log.close()
    if args.json:
        from fashion_classifier.predlog.records import record_to_dict

        for rec in rows:
            print(json.dumps(record_to_dict(rec), ensure_ascii=False))
        return 0
    if not rows:
        print("no predictions logged" + (f" on {args.day}" if args.day else ""))
        return 0
    print(format_table(rows))
    return 0


def _printable(text: str | None, width: int) -> str:
    """Client text made safe for a terminal: control characters escaped, long values cut."""
    if text is None:
        return "-"
    safe = "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)
    return safe if len(safe) <= width else safe[: width - 1] + "…"


def format_table(rows) -> str:
    from fashion_classifier.config import CLASS_NAMES

    header = ("time (UTC)", "id", "label", "conf", "model", "source", "feedback", "filename")
    body = []
    for rec in rows:
        feedback = "-"
        if rec.true_label is not None:
            known = 0 <= rec.true_label < len(CLASS_NAMES)
            name = CLASS_NAMES[rec.true_label] if known else str(rec.true_label)
            feedback = ("ok " if rec.true_label == rec.predicted_class else "no ") + name
        body.append(
            (
                rec.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                str(rec.id),
                _printable(rec.label, 12),
                f"{rec.confidence:.3f}",
                _printable(rec.model_version, 24),
                _printable(rec.source, 8),
                feedback,
                _printable(rec.filename, 40),
            )
        )
    widths = [max(len(row[i]) for row in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
