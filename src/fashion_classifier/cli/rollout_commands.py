"""``fashion-classifier model ...``: roll a version out beside the current one, on a local store.

canary VERSION --weight W, shadow VERSION, promote, rollback, status. Each move is one atomic
file replacement in the store (``artifacts.rollout``); serving processes pick it up within
their reload interval, without a restart.
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
    p.add_argument("--weight", type=argtypes.percent, required=True, metavar="PERCENT",
                   help="share of requests the candidate answers, 0-100")
    p.set_defaults(handler=cmd_canary)

    p = commands.add_parser("shadow", help="let VERSION predict every request beside the current one, unseen")
    p.add_argument("version", metavar="VERSION")
    p.set_defaults(handler=cmd_shadow)

    p = commands.add_parser("promote", help="make the candidate the current version")
    p.set_defaults(handler=cmd_promote)

    p = commands.add_parser("rollback", help="withdraw the candidate; without one, undo the last promotion")
    p.set_defaults(handler=cmd_rollback)

    p = commands.add_parser("status", help="the current version, the candidate and the last rollout moves")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(handler=cmd_status)

    for action in commands.choices.values():
        action.add_argument("--model-dir", type=Path, help="model store (default: FC_MODEL_DIR, else ./model)")


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

    candidate = _move(rollout.set_candidate, _store(args), args.version, rollout.CANARY, args.weight)
    print(f"candidate {candidate.describe()}")
    return 0


def cmd_shadow(args: argparse.Namespace) -> int:
    from fashion_classifier.artifacts import rollout

    candidate = _move(rollout.set_candidate, _store(args), args.version, rollout.SHADOW)
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
    moves = rollout.history(model_dir, limit=5)
    if args.json:
        print(json.dumps({"current": current, "candidate": candidate and vars(candidate), "moves": moves}, indent=2))
        return 0
    print(f"current    {current or '(none)'}")
    print(f"candidate  {candidate.describe() if candidate else '(none)'}")
    for move in moves:
        print(f"  {move.get('at')}  {move.get('action'):<8} {move.get('version')} ({move.get('mode')})")
    return 0
