"""``fashion-classifier cluster ...``: operate a deployed release through the Kubernetes API.

(Over 300 lines: every action's arguments sit beside its handler.)

train, status, scale, rollout; ensure-secrets and cassandra-repair, which need no release. Each
takes --namespace/--release (the Helm release, default fashion-classifier in namespace
fashion-classifier) and --kubeconfig/--context (default: the user's kubeconfig, else the pod's
service account). Nothing here imports ``kubernetes`` (the ``cluster`` extra) at module level: the
serving image is built without it and must still run every other command.

Exit codes: 3 when there is no cluster, the credentials or RBAC refuse, or the release is missing;
1 when the operation ran and failed (a training Job failed, a rollout timed out).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import TypeVar

from fashion_classifier.cli import EXIT_FAILED, EXIT_UNAVAILABLE, EXIT_USAGE, CliError, argtypes

# These modules import only the standard library at import time; `kubernetes` is imported by
# connect.connect(), which turns its absence into a one-line error.
from fashion_classifier.cluster import errors, follow, rollout, scaling, status, training
from fashion_classifier.cluster import release as releases
from fashion_classifier.cluster.connect import Cluster, connect
from fashion_classifier.cluster.release import Release
from fashion_classifier.config import ARCHITECTURES, Settings

T = TypeVar("T")


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def _timeout(p: argparse.ArgumentParser, default: float, help_text: str) -> None:
    """How long a command waits or follows: a positive number of seconds."""
    p.add_argument(
        "--timeout", type=argtypes.seconds(allow_zero=False), default=default, metavar="SECONDS", help=help_text
    )


def _common(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("cluster and release")
    g.add_argument("-n", "--namespace", help="namespace of the release (default: FC_NAMESPACE, fashion-classifier)")
    g.add_argument("--release", help="Helm release name (default: FC_RELEASE, fashion-classifier)")
    g.add_argument(
        "--kubeconfig",
        default=None,
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, else in-cluster config)",
    )
    g.add_argument("--context", default=None, help="kubeconfig context (default: its current context)")
    g.add_argument(
        "--request-timeout",
        type=argtypes.seconds(allow_zero=False),
        default=10.0,
        metavar="SECONDS",
        help="timeout of each API request (default: %(default)s)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    cluster = sub.add_parser(
        "cluster",
        help="operate a deployed release (train, status, scale, rollout, model, cassandra-repair)",
        description="Operate a fashion-classifier Helm release through the Kubernetes API "
        "(needs the 'cluster' extra: pip install 'fashion-classifier[cluster]').",
    )
    commands = cluster.add_subparsers(dest="cluster_command", metavar="ACTION", required=True)

    p = commands.add_parser(
        "train",
        help="run a training Job from the release's settings and follow it",
        description="Create a training Job from the one the chart rendered for the release (same image, "
        "volumes, settings), follow its pods and logs, and report the outcome and the new model version.",
    )
    p.add_argument("--arch", choices=ARCHITECTURES, help="architecture (default: the release's training.arch)")
    p.add_argument("--epochs", type=argtypes.whole_number(1), help="epochs (default: the release's training.epochs)")
    p.add_argument(
        "--retries",
        type=argtypes.whole_number(0, 1000),
        metavar="N",
        help="pods to retry with after a failure (the Job's backoffLimit; default: the release's)",
    )
    p.add_argument(
        "--label",
        type=_label,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra label on the Job and its pod (repeatable)",
    )
    _timeout(p, 7200.0, "stop following after this long; the Job goes on (default: %(default)s)")
    p.add_argument("--no-logs", action="store_true", help="don't stream the training logs")
    _common(p)
    p.set_defaults(handler=cmd_train)

    p = commands.add_parser(
        "status",
        help="release objects, ready replicas, Cassandra pods, model version of each pod",
        description="Show the release's workloads, autoscaler, services and pods, and the model version "
        "each classifier pod serves (asked through the API server's pod proxy).",
    )
    p.add_argument("--no-model-versions", action="store_true", help="don't ask the pods for their model")
    _common(p)
    p.set_defaults(handler=cmd_status)

    p = commands.add_parser(
        "scale",
        help="set the classifier's replica count and wait for it",
        description="Scale the classifier Deployment. While the release's HorizontalPodAutoscaler exists, "
        "only counts within its min..max are accepted.",
    )
    p.add_argument("replicas", type=argtypes.whole_number(0, 1000), help="number of classifier pods")
    p.add_argument("--no-wait", action="store_true", help="return once the change is made")
    _timeout(p, 300.0, "how long to wait for the pods (default: %(default)s)")
    _common(p)
    p.set_defaults(handler=cmd_scale)

    p = commands.add_parser(
        "rollout",
        help="wait for the classifier's rollout; --restart replaces every pod first",
        description="Wait until the classifier Deployment's rollout is complete (e.g. after helm upgrade). "
        "With --restart, first restart its pods (like kubectl rollout restart). New model versions need no "
        "restart: pods hot-reload them.",
    )
    p.add_argument("--restart", action="store_true", help="restart the pods, one at a time")
    _timeout(p, 600.0, "how long to wait (default: %(default)s)")
    _common(p)
    p.set_defaults(handler=cmd_rollout)

    p = commands.add_parser(
        "model",
        help="run a rollout command on the release's model store (canary, shadow, promote, rollback, status, ...)",
        description="Run `fashion-classifier model ACTION [ARGS]` in a Job made from the release's classifier pod, "
        "with its model store mounted writable (the classifier pods mount it read-only), and show its output. "
        "The classifier pods follow a move within their reload interval. Options of this command go before ACTION.",
    )
    p.add_argument(
        "model_args",
        nargs=argparse.REMAINDER,
        metavar="ACTION [ARGS]",
        help="as for `fashion-classifier model` (without --model-dir), e.g. canary VERSION --weight 10",
    )
    _timeout(p, 300.0, "stop following after this long; the Job goes on (default: %(default)s)")
    _common(p)
    p.set_defaults(handler=cmd_model)

    p = commands.add_parser(
        "ensure-secrets",
        help="create Secrets with random values where they do not exist yet (kustomize base)",
        description="Create each Secret NAME in the namespace unless it exists, with the given KEY=VALUE "
        "pairs and a random 32-character value for each bare KEY. Existing Secrets are left as they are. "
        "Needs get and create on Secrets; the release need not exist.",
    )
    p.add_argument(
        "secrets",
        nargs="+",
        metavar="NAME:KEY[=VALUE][,KEY[=VALUE]...]",
        help="e.g. fashion-classifier-cassandra-app:username=fc_app,password",
    )
    p.add_argument(
        "--label",
        type=_label,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="label of the Secrets created (repeatable)",
    )
    _common(p)
    p.set_defaults(handler=cmd_ensure_secrets)

    p = commands.add_parser(
        "cassandra-repair",
        help="run nodetool repair -pr on each node of a Cassandra StatefulSet, one after another",
        description="Repair the primary token ranges of every pod of the StatefulSet in turn (by exec into its "
        "cassandra container): one pass repairs every range once. The chart's CronJob runs it within "
        "gc_grace_seconds. Needs get on the StatefulSet, and get and create on pods/exec; the release need not exist.",
    )
    p.add_argument("statefulset", help="the Cassandra StatefulSet, e.g. fashion-classifier-cassandra")
    p.add_argument("keyspaces", nargs="*", help="keyspaces to repair (default: all of them)")
    _common(p)
    p.set_defaults(handler=cmd_cassandra_repair)


def cmd_ensure_secrets(args: argparse.Namespace) -> int:
    from fashion_classifier.cluster import secrets

    try:
        specs = [secrets.SecretSpec.parse(text) for text in args.secrets]
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    namespace = args.namespace or Settings.from_env().namespace
    with _cluster_errors():
        cluster = connect(args.kubeconfig, args.context, args.request_timeout)
        for spec in specs:
            created = secrets.ensure(cluster, namespace, spec, dict(args.label))
            _emit(f"secret {spec.name}: {'created' if created else 'exists, kept'}")
    return 0


def cmd_cassandra_repair(args: argparse.Namespace) -> int:
    from fashion_classifier.cluster import cassandra_repair

    namespace = args.namespace or Settings.from_env().namespace
    with _cluster_errors():
        cluster = connect(args.kubeconfig, args.context, args.request_timeout)
        cassandra_repair.repair(cluster, namespace, args.statefulset, args.keyspaces, _emit)
    return 0


def _emit(line: str) -> None:
    print(line, flush=True)


def _run(args: argparse.Namespace, operation: Callable[[Cluster, Release], T]) -> T:
    """Connect, load the release, run ``operation(cluster, release)``; cluster errors become CliError."""
    settings = Settings.from_env()
    namespace, release = args.namespace or settings.namespace, args.release or settings.release
    with _cluster_errors():
        cluster = connect(args.kubeconfig, args.context, args.request_timeout)
        return operation(cluster, releases.load(cluster, namespace, release))


@contextlib.contextmanager
def _cluster_errors() -> Iterator[None]:
    """Cluster errors become CliError with the exit code the module docstring lists."""
    try:
        yield
    except errors.Refused as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except (errors.ClientMissing, errors.NoCluster, errors.Forbidden, errors.NotFound) as exc:
        raise CliError(str(exc), EXIT_UNAVAILABLE) from None
    except errors.ClusterError as exc:  # OperationFailed and the rest
        raise CliError(str(exc), EXIT_FAILED) from None


def cmd_train(args: argparse.Namespace) -> int:
    def operation(cluster: Cluster, rel: Release) -> int:
        job = training.build_job(rel, args.arch, args.epochs, dict(args.label), args.retries)
        name = job["metadata"]["name"]
        cluster.call(
            f"create a Job in namespace {rel.namespace!r}", cluster.batch.create_namespaced_job, rel.namespace, job
        )
        _emit(
            f"job {name} created in namespace {rel.namespace} ({training.describe(job)}, "
            f"release {rel.name} revision {rel.revision})"
        )
        outcome = follow.follow_job(cluster, rel.namespace, name, _emit, args.timeout, follow_logs=not args.no_logs)
        if not outcome.succeeded:
            print(f"job {name} failed after {outcome.seconds:.0f}s: {outcome.reason}", file=sys.stderr)
            return EXIT_FAILED
        version = outcome.model_version or (
            f"unknown (the pod reported none: kubectl -n {rel.namespace} logs job/{name}, "
            "or fashion-classifier cluster status)"
        )
        _emit(f"job {name} succeeded in {outcome.seconds:.0f}s; new model version: {version}")
        return 0

    return _run(args, operation)


def _check_model_args(model_args: list[str]) -> None:
    """Refuse what `fashion-classifier model` would refuse, here rather than in a pod."""
    from fashion_classifier.cli import build_parser

    if not model_args:
        raise CliError("name an action: canary, shadow, promote, rollback, status, guard or report")
    if any(arg == "--model-dir" or arg.startswith("--model-dir=") for arg in model_args):
        raise CliError("--model-dir is the release's store: leave it out")
    try:
        build_parser().parse_args(["model", *model_args])  # argparse prints what is wrong, and exits
    except SystemExit as exc:
        if exc.code == 0:  # --help: shown, nothing to run
            raise
        raise CliError(f"`fashion-classifier model {' '.join(model_args)}` would be refused (above)") from None


# This command's own options, which may also follow ACTION (they are not `model` options).
_MODEL_OWN_OPTIONS = {
    "-n": "namespace",
    "--namespace": "namespace",
    "--release": "release",
    "--kubeconfig": "kubeconfig",
    "--context": "context",
    "--timeout": "timeout",
    "--request-timeout": "request_timeout",
}


def _take_own_options(args: argparse.Namespace) -> None:
    """Move this command's options found after ACTION from ``model_args`` into ``args``."""
    rest, tokens = [], iter(args.model_args)
    for token in tokens:
        name, sep, value = token.partition("=")
        if name in _MODEL_OWN_OPTIONS and name.startswith("--") or token in _MODEL_OWN_OPTIONS:
            if not sep:
                value = next(tokens, None)
                if value is None:
                    raise CliError(f"{name} needs a value")
            dest = _MODEL_OWN_OPTIONS[name]
            if dest in ("timeout", "request_timeout"):
                try:
                    value = argtypes.seconds(allow_zero=False)(value)
                except argparse.ArgumentTypeError as exc:
                    raise CliError(f"{name}: {exc}") from None
            setattr(args, dest, value)
        else:
            rest.append(token)
    args.model_args = rest


def cmd_model(args: argparse.Namespace) -> int:
    from fashion_classifier.cluster import model_jobs

    _take_own_options(args)
    _check_model_args(args.model_args)

    def operation(cluster: Cluster, rel: Release) -> int:
        job = model_jobs.build_job(rel, args.model_args)
        name = job["metadata"]["name"]
        cluster.call(
            f"create a Job in namespace {rel.namespace!r}", cluster.batch.create_namespaced_job, rel.namespace, job
        )
        _emit(f"job {name} created in namespace {rel.namespace}: fashion-classifier model {' '.join(args.model_args)}")
        outcome = follow.follow_job(cluster, rel.namespace, name, _emit, args.timeout)
        if not outcome.succeeded:
            print(f"job {name} failed after {outcome.seconds:.0f}s: {outcome.reason}", file=sys.stderr)
            return EXIT_FAILED
        _emit(f"job {name} succeeded in {outcome.seconds:.0f}s")
        return 0

    return _run(args, operation)


def cmd_status(args: argparse.Namespace) -> int:
    def operation(cluster: Cluster, rel: Release) -> int:
        for line in status.collect(cluster, rel, model_versions=not args.no_model_versions).lines:
            _emit(line)
        return 0

    return _run(args, operation)


def cmd_scale(args: argparse.Namespace) -> int:
    def operation(cluster: Cluster, rel: Release) -> int:
        scaling.scale(cluster, rel, args.replicas, _emit, wait=not args.no_wait, timeout=args.timeout)
        return 0

    return _run(args, operation)


def cmd_rollout(args: argparse.Namespace) -> int:
    def operation(cluster: Cluster, rel: Release) -> int:
        result = rollout.rollout(cluster, rel, _emit, restart=args.restart, timeout=args.timeout)
        _emit(
            f"deployment {result.deployment}: rollout complete, revision {result.revision}, "
            f"{result.replicas} pods{' (restarted)' if result.restarted else ''}"
        )
        return 0

    return _run(args, operation)
