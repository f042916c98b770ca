"""The Cassandra image built from the Maven jars (docker/cassandra) runs the chart's StatefulSet as is.

`scripts/image-build cassandra` builds it (or reuses its cached layers); then the test runs it with
podman the way the chart's pod runs it, taking from `helm template` (with only the image name
overridden) the init container's script, the main container's environment, user, mount paths, the
readiness probe and the preStop hook: uid 999, read-only root filesystem, no capabilities, the
config, data, log and /tmp directories as volumes, password authentication switched on by the init
container's sed. The checks: the node reports exactly the cluster name, data center, rack and token
count given through the official image's variables; a CQL write and read work through the
project's driver; the readiness probe (`nodetool status` shows UN) passes; the JVM is PID 1 and
stops on SIGTERM after the preStop drain, within a bound.

Host networking on a loopback address of its own (POD_IP=127.0.0.21): nothing leaves the machine,
and the pod's seeds (DNS names of the StatefulSet's pods) become that address. Heavy (a JVM on
2 cores, about a minute): the `image` CI stage.
"""

from __future__ import annotations

import re
import socket
import subprocess
import time
import uuid

import pytest
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable
from cassandra.policies import DCAwareRoundRobinPolicy
from k8s_support import ROOT

POD_IP = "127.0.0.21"
# Non-default values for every setting the test reads back from system.local.
CLUSTER_NAME = "fc image's test cluster"
DC = "dc-image-test"
RACK = "rack-image-test"
NUM_TOKENS = 4
START_TIMEOUT = 240  # seconds from `podman run` to CQL, with room for a loaded 2-core machine
STOP_BOUND = 30  # seconds from SIGTERM to exit (Kubernetes allows the pod 120)


def _podman(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """podman with the project's private config and storage (docker/podman-env.sh)."""
    proc = subprocess.run(
        ["bash", "-c", '. docker/podman-env.sh && exec podman "$@"', "podman", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        pytest.fail(f"podman {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def _env_var(name: str) -> str:
    return subprocess.run(
        ["bash", "-c", f'. docker/podman-env.sh && echo "${name}"'],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env_args(env: dict[str, str]) -> list[str]:
    return [arg for name, value in env.items() for arg in ("-e", f"{name}={value}")]


@pytest.fixture(scope="module")
def image() -> str:
    proc = subprocess.run([ROOT / "scripts" / "image-build", "cassandra"], capture_output=True, text=True, timeout=1800)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"scripts/image-build cassandra exited {proc.returncode}:\n{output[-6000:]}"
    print(output.strip().splitlines()[-1])  # "image-build: <image>: <size> MB"
    return _env_var("CASSANDRA_IMAGE")


@pytest.fixture(scope="module")
def pod(image: str, render_chart) -> dict:
    """The chart's Cassandra pod spec, rendered with this image and the test's cluster settings."""
    repository, tag = image.rsplit(":", 1)
    rendered = render_chart(
        {
            "cassandra": {
                "image": {"repository": repository, "tag": tag},
                "clusterName": CLUSTER_NAME,
                "datacenter": DC,
                "rack": RACK,
            }
        },
        name="cassandra-image",
    )
    spec = rendered.get("StatefulSet", "fashion-classifier-cassandra")["spec"]["template"]["spec"]
    for container in spec["initContainers"] + spec["containers"]:
        assert container["image"] == image, "the image name must be all the chart needs"
    return spec


@pytest.mark.image
@pytest.mark.timeout(2400)
def test_cassandra_image_runs_the_charts_pod(image: str, pod: dict, capsys):
    [init] = pod["initContainers"]
    [main] = [c for c in pod["containers"] if c["name"] == "cassandra"]
    security = pod["securityContext"]
    user = f"{security['runAsUser']}:{security['runAsGroup']}"
    mounts = {m["name"]: m["mountPath"] for m in main["volumeMounts"]}
    assert set(mounts) == {"config", "data", "logs", "tmp"} and mounts["config"] == "/etc/cassandra"
    assert main["securityContext"]["readOnlyRootFilesystem"] is True

    run_id = f"fc-cass-test-{uuid.uuid4().hex[:8]}"
    volumes = {name: f"{run_id}-{name}" for name in ("config", "data", "logs")}
    hardening = ["--user", user, "--read-only", "--cap-drop=ALL", "--security-opt", "no-new-privileges"]
    jmx_port = _free_port()
    try:
        cql_free = socket.socket()
        assert cql_free.connect_ex((POD_IP, 9042)) != 0, f"something already listens on {POD_IP}:9042"
        cql_free.close()
        for volume in volumes.values():
            _podman("volume", "create", volume)

        # The init container, command and environment as rendered: waits until a seed's name
        # resolves, copies /etc/cassandra/. to the config volume and switches on password
        # authentication with its sed. Its seeds are the pod IP, as the main container's below
        # (the pods' DNS names do not resolve here).
        init_env = {e["name"]: e["value"] for e in init["env"]}
        assert init_env["CASSANDRA_AUTH"] == "true", "the chart's default is authentication on"
        assert init_env["CASSANDRA_SEEDS"] == next(e["value"] for e in main["env"] if e["name"] == "CASSANDRA_SEEDS")
        init_env["CASSANDRA_SEEDS"] = POD_IP
        _podman(
            "run",
            "--rm",
            "--network=none",
            *hardening,
            "-v",
            f"{volumes['config']}:/config:U",
            *_env_args(init_env),
            "--entrypoint",
            init["command"][0],
            image,
            *init["command"][1:],
        )

        # The main container's environment as rendered, plus what a pod has and this host lacks:
        # its IP (the downward API's status.podIP), seeds that resolve (the pods' DNS names do not
        # here), CQL on the pod IP instead of 0.0.0.0 (the host's network is shared), a JMX port of
        # its own. The token count is the official image's variable the chart leaves at its default.
        env = {e["name"]: e["value"] for e in main["env"] if "value" in e}
        assert {e["name"] for e in main["env"] if "valueFrom" in e} == {"POD_IP"}
        env |= {
            "POD_IP": POD_IP,
            "CASSANDRA_SEEDS": POD_IP,
            "CASSANDRA_RPC_ADDRESS": POD_IP,
            "CASSANDRA_NUM_TOKENS": str(NUM_TOKENS),
            "JMX_PORT": str(jmx_port),
            # A fresh node waits ring_delay (30 s) before choosing tokens, and the superuser role
            # 10 s: both shortened for the test, through the official image's JVM_EXTRA_OPTS.
            "JVM_EXTRA_OPTS": env.get("JVM_EXTRA_OPTS", "")
            + " -Dcassandra.ring_delay_ms=3000 -Dcassandra.superuser_setup_delay_ms=0",
        }
        assert env["CASSANDRA_CLUSTER_NAME"] == CLUSTER_NAME and env["CASSANDRA_DC"] == DC
        assert env["CASSANDRA_ENDPOINT_SNITCH"] == "GossipingPropertyFileSnitch"
        started = time.monotonic()
        _podman(
            "run",
            "-d",
            "--name",
            run_id,
            "--network=host",
            *hardening,
            "-v",
            f"{volumes['config']}:{mounts['config']}:U",
            "-v",
            f"{volumes['data']}:{mounts['data']}:U",
            "-v",
            f"{volumes['logs']}:{mounts['logs']}:U",
            "--tmpfs",
            f"{mounts['tmp']}:rw,exec,size=256m",
            *_env_args(env),
            image,
        )

        _wait_for_cql(run_id, started)
        with capsys.disabled():
            print(f"\ncassandra image: CQL up {time.monotonic() - started:.0f} s after podman run")

        top = _podman("top", run_id, "pid", "user", "args").stdout.splitlines()[1:]
        pid1 = next(line.split(None, 2) for line in top if line.split()[0] == "1")
        assert pid1[2].startswith("java ") and "CassandraDaemon" in pid1[2], f"PID 1 must be the JVM: {pid1}"
        assert pid1[1] in ("cassandra", "999"), pid1

        _check_cql(env)

        # The readiness probe: this node UN in `nodetool status`.
        probe = main["readinessProbe"]["exec"]["command"]
        deadline = time.monotonic() + 60
        while _podman("exec", run_id, *probe, check=False, timeout=30).returncode != 0:
            assert time.monotonic() < deadline, _podman("exec", run_id, "nodetool", "status", check=False).stdout
            time.sleep(2)
        status = _podman("exec", run_id, "bash", "-c", "MAX_HEAP_SIZE=128M nodetool status").stdout
        assert re.search(rf"^UN\s+{re.escape(POD_IP)}\s.*\s{NUM_TOKENS}\s.*\s{RACK}\s*$", status, re.M), status

        # Pod deletion: the preStop hook (nodetool drain), then SIGTERM to PID 1.
        _podman("exec", run_id, *main["lifecycle"]["preStop"]["exec"]["command"], timeout=60)
        stop_started = time.monotonic()
        _podman("stop", "-t", "60", run_id, timeout=90)
        stopped_in = time.monotonic() - stop_started
        exit_code = _podman("inspect", "-f", "{{.State.ExitCode}}", run_id).stdout.strip()
        assert exit_code == "143", f"the JVM must exit on SIGTERM (128 + 15), not be killed: {exit_code}"
        assert stopped_in < STOP_BOUND, f"SIGTERM took {stopped_in:.1f} s"
        tail = _podman("logs", "--tail", "20", run_id)
        assert "Cassandra shutdown complete" in tail.stdout + tail.stderr
    except BaseException:
        logs = _podman("logs", "--tail", "60", run_id, check=False)
        print(f"last lines of {run_id}:\n{logs.stdout}{logs.stderr}")
        raise
    finally:
        _podman("rm", "-f", "-v", "-t", "5", run_id, check=False)
        _podman("volume", "rm", "-f", *volumes.values(), check=False)


def _wait_for_cql(container: str, started: float) -> None:
    while True:
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex((POD_IP, 9042)) == 0:
                return
        state = _podman("inspect", "-f", "{{.State.Running}}", container).stdout.strip()
        assert state == "true", "the container exited during startup"
        assert time.monotonic() - started < START_TIMEOUT, f"no CQL on {POD_IP}:9042 after {START_TIMEOUT} s"
        time.sleep(1)


def _check_cql(env: dict[str, str]) -> None:
    """system.local has the values given through the environment; a write and a read work."""
    profile = ExecutionProfile(load_balancing_policy=DCAwareRoundRobinPolicy(local_dc=DC), request_timeout=30)
    cluster = Cluster(
        [POD_IP],
        port=9042,
        protocol_version=5,
        execution_profiles={EXEC_PROFILE_DEFAULT: profile},
        auth_provider=PlainTextAuthProvider("cassandra", "cassandra"),
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # the default superuser appears just after CQL opens
            try:
                session = cluster.connect()
                break
            except NoHostAvailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(2)
        local = session.execute(
            "SELECT cluster_name, data_center, rack, tokens, listen_address, broadcast_address, rpc_address,"
            " release_version FROM system.local"
        ).one()
        assert (local.cluster_name, local.data_center, local.rack) == (CLUSTER_NAME, DC, RACK)
        assert len(local.tokens) == NUM_TOKENS
        assert str(local.listen_address) == str(local.broadcast_address) == str(local.rpc_address) == POD_IP
        assert local.release_version == _env_var("CASSANDRA_VERSION")

        session.execute(
            f"CREATE KEYSPACE image_test WITH replication = {{'class': 'NetworkTopologyStrategy', '{DC}': 1}}"
        )
        session.execute("CREATE TABLE image_test.kv (k text PRIMARY KEY, v int)")
        session.execute("INSERT INTO image_test.kv (k, v) VALUES (%s, %s)", ("answer", 42))
        assert session.execute("SELECT v FROM image_test.kv WHERE k = %s", ("answer",)).one().v == 42
    finally:
        cluster.shutdown()
