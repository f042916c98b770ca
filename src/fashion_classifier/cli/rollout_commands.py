"""``fashion-classifier model ...``: roll a version out beside the current one, on a local store.

canary VERSION --weight W, shadow VERSION, promote, rollback, status. Each move is one atomic
file replacement in the store (``artifacts.rollout``); serving processes pick it up within
their reload interval, without a restart. ``report`` compares the arms from the prediction log.

(Over 300 lines: every action's arguments sit beside its handler.)
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fashion_classifier.cli import EXIT_UNAVAILABLE, CliError, argtypes
from fashion_classifier.config import Settings


def register(sub: argparse._SubParsersAction) -> None:
    model = sub.add_parser(
        "model",
        help="roll out a candidate version: canary, shadow, promote, rollback, status",
        description="Serve a published version beside the current one (a share of requests, or in the shadow "
        "of every request), then promote it or roll it back. Workers follow within FC_RELOAD_INTERVAL.",
    )
    commands = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)

    p = commands.add_parser("canary", help="answer a share of requests with VERSION")
    p.add_argument("version", metavar="VERSION")
    p.add_argument(
        "--weight",
        type=argtypes.percent,
        required=True,
        metavar="PERCENT",
        help="share of requests the candidate answers, 0-100",
    )
    p.set_defaults(handler=cmd_canary)

    p = commands.add_parser("shadow", help="let VERSION predict every request beside the current one, unseen")
    p.add_argument("version", metavar="VERSION")
    p.set_defaults(handler=cmd_shadow)

    for action in (commands.choices["canary"], commands.choices["shadow"]):
        action.add_argument(
            "--unless-withdrawn",
            action="store_true",
            help="do nothing if the guard withdrew VERSION before (the chart's hook, which "
            "repeats its values on every upgrade)",
        )

    p = commands.add_parser("promote", help="make the candidate the current version")
    p.set_defaults(handler=cmd_promote)

    p = commands.add_parser("rollback", help="withdraw the candidate; without one, undo the last promotion")
    p.set_defaults(handler=cmd_rollback)

    p = commands.add_parser("status", help="the current version, the candidate and the last rollout moves")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_status)

    for action in commands.choices.values():
        action.add_argument("--model-dir", type=Path, help="model store (default: FC_MODEL_DIR, else ./model)")

    p = commands.add_parser(
        "report",
        help="compare the versions that answered over a time window, from the log",
        description="Per version and arm: predictions, live accuracy from feedback (95 % Wilson "
        "interval), latency p50/p99; per shadow: agreement with the served class and its own "
        "accuracy on the same feedback. Reads the configured prediction log (FC_PREDLOG).",
    )
    p.add_argument(
        "--since",
        type=argtypes.duration,
        default=3600.0,
        metavar="DURATION",
        help="the window: the last 90s, 30m, 2h, 1d (default: 1h)",
    )
    p.add_argument(
        "--max-rows",
        type=argtypes.whole_number(1, 10_000_000),
        default=200_000,
        help="rows read at most, newest first (default: 200,000)",
    )
    p.add_argument(
        "--metrics-url",
        metavar="URL",
        help="a server's /metrics (the gunicorn master's port): adds each version's failed inferences",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--wait",
        type=argtypes.seconds(),
        default=30.0,
        help="seconds to wait for the prediction log to connect (default: 30)",
    )
    p.set_defaults(handler=cmd_report)

    p = commands.add_parser(
        "guard",
        help="withdraw the candidate when it is measurably worse than the current version",
        description="Judge the candidate on the prediction log since it was set (live accuracy from feedback) "
        "and, with --prometheus-url or --metrics-url, on failed inferences; withdraw it (an auto-rollback) "
        "when it is worse by more than the margins. Once, or every --every. The rules: docs/rollouts.md.",
    )
    p.add_argument("--model-dir", type=Path, help="model store (default: FC_MODEL_DIR, else ./model)")
    p.add_argument(
        "--every",
        type=argtypes.duration,
        metavar="DURATION",
        help="judge again at this interval until interrupted (default: once)",
    )
    p.add_argument(
        "--margin",
        type=argtypes.percent,
        default=5.0,
        metavar="POINTS",
        help="accuracy points the candidate may lose (default: 5)",
    )
    p.add_argument(
        "--min-feedback",
        type=argtypes.whole_number(1),
        default=30,
        help="answers of feedback each version needs before it is judged (default: 30)",
    )
    p.add_argument(
        "--window",
        type=argtypes.duration,
        default=3600.0,
        metavar="DURATION",
        help="evidence from this long back at most (default: 1h)",
    )
    failures = p.add_mutually_exclusive_group()
    failures.add_argument(
        "--prometheus-url",
        metavar="URL",
        help="a Prometheus server: also withdraw a candidate whose inferences fail more often, "
        "counted over every pod in the window",
    )
    failures.add_argument(
        "--metrics-url", metavar="URL", help="one server's /metrics instead: its failed inferences since it started"
    )
    p.add_argument(
        "--wait",
        type=argtypes.seconds(),
        default=30.0,
        help="seconds to wait for the prediction log to connect (default: 30)",
    )
    p.add_argument(
        "--prometheus-selector",
        default="",
        metavar="MATCHERS",
        help='label matchers for the release\'s series, e.g. namespace="fc" (default: all)',
    )
    p.set_defaults(handler=cmd_guard)


def _store(args: argparse.Namespace) -> Path:
    return args.model_dir if args.model_dir is not None else Settings.from_env().model_dir


def _move(move, *args) -> object:
    from fashion_classifier.artifacts.store import ArtifactError

    try:
        return move(*args)
    except (ArtifactError, OSError) as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None


def cmd_canary(args: argparse.Namespace) -> int:
    from fashion_classifier.artifacts import rollout

    return _set(args, rollout.CANARY, args.weight)


def cmd_shadow(args: argparse.Namespace) -> int:
    from fashion_classifier.artifacts import rollout

    return _set(args, rollout.SHADOW, 0.0)


def _set(args: argparse.Namespace, mode: str, weight: float) -> int:
    from fashion_classifier.artifacts import rollout, store

    model_dir = _store(args)
    if _move(store.current_version, model_dir) == args.version:
        # Already promoted: nothing to roll out. Not an error, so the chart's hook, which repeats
        # model.candidate on every upgrade, succeeds after a promotion.
        print(f"{args.version} is the current version: no candidate set")
        return 0
    withdrawn = _move(rollout.last_withdrawal_by_guard, model_dir, args.version) if args.unless_withdrawn else None
    if withdrawn is not None:
        print(
            f"{args.version} was withdrawn by the guard at {withdrawn.get('at')}: no candidate set "
            f"(set it again without --unless-withdrawn)"
        )
        return 0
    candidate = _move(rollout.set_candidate, model_dir, args.version, mode, weight)
    print(f"candidate {candidate.describe()}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from fashion_classifier.artifacts import rollout

    candidate = _move(rollout.promote, _store(args))
    print(f"promoted {candidate.version}: it is the current version")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from fashion_classifier.artifacts import rollout

    print(_move(rollout.rollback, _store(args)))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from fashion_classifier.artifacts import rollout, store

    model_dir = _store(args)
    current = _move(store.current_version, model_dir)
    candidate = _move(rollout.read_candidate, model_dir)
    auto = rollout.count_moves(model_dir)[rollout.AUTO_ROLLBACK]
    moves = rollout.history(model_dir, limit=5)
    if args.json:
        print(
            json.dumps(
                {
                    "current": current,
                    "candidate": candidate and vars(candidate),
                    "moves": moves,
                    "auto_rollbacks": auto,
                },
                indent=2,
            )
        )
        return 0
    print(f"current    {current or '(none)'}")
    print(f"candidate  {candidate.describe() if candidate else '(none)'}")
    print(f"automatic rollbacks: {auto}")
    for move in moves:
        print(f"  {move.get('at')}  {move.get('action') or '?':<8} {move.get('version')} ({move.get('mode')})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime, timedelta

    from fashion_classifier.predlog import PredictionLogUnavailable, open_log, when_available
    from fashion_classifier.predlog.arms_report import compare, window

    settings = Settings.from_env()
    if settings.predlog == "off":
        raise CliError("FC_PREDLOG=off: predictions are not logged", EXIT_UNAVAILABLE)
    end = datetime.now(UTC)
    start = end - timedelta(seconds=args.since)
    log = open_log(settings)
    try:
        report = when_available(lambda: compare(window(log, start, end), start, end, args.max_rows), args.wait)
    except PredictionLogUnavailable as exc:
        raise CliError(f"prediction log unavailable: {exc}", EXIT_UNAVAILABLE) from None
    finally:
        log.close()
    errors = _inference_errors(args.metrics_url) if args.metrics_url else None
    if args.json:
        print(json.dumps(_report_json(report, errors), indent=2))
        return 0
    print(_report_text(report, errors))
    return 0


def _inference_errors(url: str) -> dict[str, float]:
    """Failed inferences per model version, from a server's metrics."""
    from fashion_classifier.rollout_guard import inference_counts

    try:
        return {version: failed for version, (_, failed) in inference_counts(url).items()}
    except (OSError, ValueError) as exc:
        raise CliError(f"cannot read {url}: {exc}", EXIT_UNAVAILABLE) from None


def _inference_source(args: argparse.Namespace):
    """The guard's failed-inference counts: from Prometheus over the window, one server, or none."""
    from fashion_classifier.rollout_guard import inference_counts, prometheus_counts

    if args.prometheus_url:
        return lambda seconds: prometheus_counts(args.prometheus_url, args.prometheus_selector, seconds)
    if args.metrics_url:
        return lambda seconds: inference_counts(args.metrics_url)
    return None


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f} %"


def _interval(bounds: tuple[float, float] | None) -> str:
    return "" if bounds is None else f" [{100 * bounds[0]:.1f}, {100 * bounds[1]:.1f}]"


def _report_text(report, errors: dict[str, float] | None) -> str:
    lines = [
        f"{report.start:%Y-%m-%d %H:%M:%S} to {report.end:%H:%M:%S} UTC: {report.rows:,} predictions"
        + (" (the newest only: --max-rows reached)" if report.truncated else "")
    ]
    if not report.arms:
        return lines[0]
    lines.append(
        f"  {'arm':<10} {'version':<34} {'answered':>9} {'feedback':>9} {'accuracy [95 % CI]':>26} "
        f"{'p50 ms':>7} {'p99 ms':>7}" + (f" {'errors':>7}" if errors is not None else "")
    )
    for arm in report.arms:
        accuracy = _percent(arm.accuracy) + _interval(arm.accuracy_interval)
        line = (
            f"  {arm.arm or '-':<10} {arm.model_version:<34} {arm.predictions:>9,} {arm.feedback:>9,} "
            f"{accuracy:>26} {arm.latency_p50_ms:>7.2f} {arm.latency_p99_ms:>7.2f}"
        )
        if errors is not None:
            line += f" {errors.get(arm.model_version, 0):>7.0f}"
        lines.append(line)
    for shadow in report.shadows:
        lines.append(
            f"  shadow {shadow.model_version} beside {shadow.served_by}: agreed on "
            f"{_percent(shadow.agreement)} of {shadow.compared:,}; right on "
            f"{_percent(shadow.accuracy)}{_interval(shadow.accuracy_interval)} of {shadow.feedback:,} "
            "with feedback"
        )
    return "\n".join(lines)


def _report_json(report, errors: dict[str, float] | None) -> dict:
    def arm_json(arm) -> dict:
        out = {
            "model_version": arm.model_version,
            "arm": arm.arm,
            "predictions": arm.predictions,
            "feedback": arm.feedback,
            "accuracy": arm.accuracy,
            "accuracy_interval": arm.accuracy_interval,
            "latency_p50_ms": arm.latency_p50_ms,
            "latency_p99_ms": arm.latency_p99_ms,
        }
        if errors is not None:
            out["inference_errors"] = errors.get(arm.model_version, 0)
        return out

    return {
        "start": report.start.isoformat(),
        "end": report.end.isoformat(),
        "rows": report.rows,
        "truncated": report.truncated,
        "arms": [arm_json(arm) for arm in report.arms],
        "shadows": [
            {
                "model_version": s.model_version,
                "served_by": s.served_by,
                "compared": s.compared,
                "agreement": s.agreement,
                "feedback": s.feedback,
                "accuracy": s.accuracy,
                "accuracy_interval": s.accuracy_interval,
            }
            for s in report.shadows
        ],
    }


def cmd_guard(args: argparse.Namespace) -> int:
    import time

    from fashion_classifier.predlog import PredictionLogUnavailable, open_log, when_available
    from fashion_classifier.rollout_guard import Rules, guard_once

    settings = Settings.from_env()
    if settings.predlog == "off":
        raise CliError("FC_PREDLOG=off: there is no evidence to judge a candidate on", EXIT_UNAVAILABLE)
    rules = Rules(margin=args.margin / 100, min_feedback=args.min_feedback, window_seconds=args.window)
    model_dir = _store(args)
    inferences = _inference_source(args)
    log = open_log(settings)
    try:
        while True:
            try:
                try:
                    verdict = when_available(lambda: _move(guard_once, model_dir, log, rules, inferences), args.wait)
                except PredictionLogUnavailable as exc:
                    raise CliError(f"prediction log unavailable: {exc}", EXIT_UNAVAILABLE) from None
            except CliError as exc:
                if args.every is None:
                    raise
                print(f"{exc}; judging again in {args.every:g} s", flush=True)  # a guard outlives outages
            else:
                if verdict is None:
                    print("no candidate", flush=True)
                else:
                    action = "withdrawn" if verdict.withdraw else "kept"
                    print(f"candidate {verdict.candidate} {action}: {verdict.why}", flush=True)
            if args.every is None:
                return 0
            time.sleep(args.every)
    finally:
        log.close()
