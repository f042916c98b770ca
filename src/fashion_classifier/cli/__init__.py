"""The ``fashion-classifier`` command.

Each command group lives in its own module with a ``register(subparsers)`` function; a handler
returns an exit code. Expected failures raise :class:`CliError` and print one line on stderr.

Exit codes: 0 success, 1 the operation failed (e.g. a cluster Job failed), 2 bad usage or
input (argparse's convention), 3 a required resource is unavailable (model, data, cluster).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from fashion_classifier import __version__
from fashion_classifier.config import ConfigError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNAVAILABLE = 0, 1, 2, 3


class CliError(Exception):
    """An expected failure: printed as one line, exit with ``code``."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    # Imported here: each group imports CliError and the exit codes from this module.
    from fashion_classifier.cli import (
        cluster_commands,
        model_commands,
        predlog_commands,
        rollout_commands,
        serve_commands,
    )

    parser = argparse.ArgumentParser(
        prog="fashion-classifier",
        description="Train, serve and operate the Fashion-MNIST classifier. Settings come from FC_* "
        "environment variables (see `fashion-classifier config`).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in (model_commands, rollout_commands, serve_commands, predlog_commands, cluster_commands):
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CliError as exc:
        print(f"fashion-classifier {args.command}: error: {exc}", file=sys.stderr)
        return exc.code
    except ConfigError as exc:
        print(f"fashion-classifier {args.command}: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"fashion-classifier {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
