"""Training data from a volume, the shared spool claim, and where the pods sharing claims run:
the chart's values, the kustomize components that match them, and the Jobs the CLI copies."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import yaml
from k8s_support import CHART, NAMESPACE, Rendered
from test_parity import _comparable, _objects

from fashion_classifier.cluster.release import Release
from fashion_classifier.cluster.training import build_job

COLOCATION_LABEL = "fashion-classifier.dev/rwo-volumes"


def _pod_spec(r: Rendered, kind: str, name: str) -> dict:
    return r.get(kind, name)["spec"]["template"]["spec"]


def _env(container: dict) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in container.get("env") or []}


def _hostname_term(spec: dict) -> dict:
    [term] = spec["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    return term


def test_rwo_default_puts_classifier_and_training_on_one_node(render_chart):
    r = render_chart({}, name="defaults")
    deploy, train = r.get("Deployment", "fashion-classifier"), r.get("Job", "fashion-classifier-train")
    for workload in (deploy, train):
        template = workload["spec"]["template"]
        assert template["metadata"]["labels"][COLOCATION_LABEL] == "true"
        # One selector for both: the release's pods carrying the label, whatever their component,
        # so the training pod may be the first on a node and the classifier pods follow it.
        assert _hostname_term(template["spec"])["labelSelector"] == {
            "matchLabels": {
                "app.kubernetes.io/name": "fashion-classifier",
                "app.kubernetes.io/instance": "fashion-classifier",
                COLOCATION_LABEL: "true",
            }
        }
        assert "topologySpreadConstraints" not in template["spec"]
    # Another release in the namespace is never an anchor.
    other = render_chart({}, name="demo", release="demo")
    term = _hostname_term(_pod_spec(other, "Deployment", "demo-fashion-classifier"))
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"] == "demo"


def test_rwx_spreads_the_classifier_and_frees_the_training_job(render_chart):
    r = render_chart({"modelStore": {"accessMode": "ReadWriteMany"}}, name="rwx")
    spec = _pod_spec(r, "Deployment", "fashion-classifier")
    assert "affinity" not in spec
    assert [c["whenUnsatisfiable"] for c in spec["topologySpreadConstraints"]] == ["ScheduleAnyway"]
    assert "affinity" not in _pod_spec(r, "Job", "fashion-classifier-train")
    for kind, name in (("Deployment", "fashion-classifier"), ("Job", "fashion-classifier-train")):
        assert COLOCATION_LABEL not in r.get(kind, name)["spec"]["template"]["metadata"]["labels"]
    assert r.get("PersistentVolumeClaim", "fashion-classifier-spool")["spec"]["accessModes"] == ["ReadWriteMany"]


def test_helm_test_pods_mount_no_shared_claim(render_chart):
    # They need no co-location: only the classifier and training pods mount the claims.
    for pod in render_chart({}, name="defaults").of_kind("Pod"):
        assert not [v for v in pod["spec"].get("volumes", []) if "persistentVolumeClaim" in v]


def test_spool_claim_defaults(render_chart):
    r = render_chart({}, name="defaults")
    claim = r.get("PersistentVolumeClaim", "fashion-classifier-spool")
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "storageClassName" not in claim["spec"]
    # Unsent rows outlive the release, like the models.
    assert claim["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    spec = _pod_spec(r, "Deployment", "fashion-classifier")
    mounts = {m["name"]: m for m in spec["containers"][0]["volumeMounts"]}
    assert mounts["spool"]["mountPath"] == r.get("ConfigMap", "fashion-classifier")["data"]["FC_SPOOL_DIR"]
    assert not mounts["spool"].get("readOnly")
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["spool"]["persistentVolumeClaim"]["claimName"] == "fashion-classifier-spool"
    assert volumes["state"]["emptyDir"] == {"sizeLimit": "1Gi"}


def test_spool_claim_follows_the_model_store_class(render_chart):
    r = render_chart(
        {
            "modelStore": {"accessMode": "ReadWriteMany", "storageClassName": "nfs"},
            "spool": {"persistence": {"size": "5Gi"}},
        },
        name="spool-class",
    )
    claim = r.get("PersistentVolumeClaim", "fashion-classifier-spool")
    assert claim["spec"]["storageClassName"] == "nfs"
    assert claim["spec"]["resources"]["requests"]["storage"] == "5Gi"
    own = render_chart(
        {"modelStore": {"storageClassName": "nfs"}, "spool": {"persistence": {"storageClassName": "local-ssd"}}},
        name="spool-own-class",
    )
    assert own.get("PersistentVolumeClaim", "fashion-classifier-spool")["spec"]["storageClassName"] == "local-ssd"
    # ReadWriteOncePod is no mode for a claim several pods share: the spool is ReadWriteOnce then.
    rwop = render_chart({"modelStore": {"accessMode": "ReadWriteOncePod"}}, name="rwop")
    assert rwop.get("PersistentVolumeClaim", "fashion-classifier-spool")["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert COLOCATION_LABEL in rwop.get("Deployment", "fashion-classifier")["spec"]["template"]["metadata"]["labels"]


def test_spool_without_persistence_is_an_emptydir(render_chart):
    r = render_chart({"spool": {"persistence": {"enabled": False}, "sizeLimit": "2Gi"}}, name="spool-emptydir")
    assert r.get("PersistentVolumeClaim", "fashion-classifier-spool") is None
    spec = _pod_spec(r, "Deployment", "fashion-classifier")
    assert {v["name"] for v in spec["volumes"]} == {"models", "state", "metrics", "tmp", "api-token"}
    assert next(v for v in spec["volumes"] if v["name"] == "state")["emptyDir"] == {"sizeLimit": "2Gi"}


def test_sqlite_log_stays_in_the_pods_own_volume(render_chart):
    r = render_chart(
        {"config": {"predlog": "sqlite"}, "cassandra": {"enabled": False}, "networkPolicy": {"enabled": False}},
        name="sqlite-spool-claim",
    )
    data = r.get("ConfigMap", "fashion-classifier")["data"]
    assert data["FC_SQLITE_PATH"] == "/var/lib/fashion-classifier/predictions.sqlite3"
    mounts = {
        m["mountPath"]: m["name"]
        for m in _pod_spec(r, "Deployment", "fashion-classifier")["containers"][0]["volumeMounts"]
    }
    assert mounts["/var/lib/fashion-classifier"] == "state"
    assert mounts[data["FC_SPOOL_DIR"]] == "spool"


def test_training_downloads_without_data_values(render_chart):
    spec = _pod_spec(render_chart({}, name="defaults"), "Job", "fashion-classifier-train")
    assert "FC_DATA_DIR" not in _env(spec["containers"][0])
    assert {v["name"] for v in spec["volumes"]} == {"models", "tmp"}


def test_training_data_from_a_host_path(render_chart):
    r = render_chart({"training": {"data": {"hostPath": "/srv/fashion-mnist"}}}, name="data-hostpath")
    spec = _pod_spec(r, "Job", "fashion-classifier-train")
    [container] = spec["containers"]
    assert _env(container)["FC_DATA_DIR"] == "/data"
    [mount] = [m for m in container["volumeMounts"] if m["name"] == "data"]
    assert mount == {"name": "data", "mountPath": "/data", "readOnly": True}
    [volume] = [v for v in spec["volumes"] if v["name"] == "data"]
    assert volume["hostPath"] == {"path": "/srv/fashion-mnist", "type": "Directory"}


def test_training_data_from_a_claim(render_chart):
    r = render_chart({"training": {"data": {"existingClaim": "fashion-mnist", "subPath": "v1/raw"}}}, name="data-claim")
    spec = _pod_spec(r, "Job", "fashion-classifier-train")
    [mount] = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "data"]
    assert mount == {"name": "data", "mountPath": "/data", "readOnly": True, "subPath": "v1/raw"}
    [volume] = [v for v in spec["volumes"] if v["name"] == "data"]
    assert volume["persistentVolumeClaim"] == {"claimName": "fashion-mnist", "readOnly": True}
    # Only the training Job reads the data.
    assert "data" not in {v["name"] for v in _pod_spec(r, "Deployment", "fashion-classifier")["volumes"]}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"hostPath": "/srv/fm", "existingClaim": "fm"}, "not both"),
        ({"hostPath": "srv/fm"}, "hostPath"),
        ({"existingClaim": "Fashion_MNIST"}, "existingClaim"),
        ({"hostPath": "/srv", "subPath": "../etc"}, "subPath"),
        ({"hostPath": "/srv", "subPath": "/abs"}, "subPath"),
        ({"hostpath": "/srv"}, "hostpath"),
    ],
    ids=str,
)
def test_chart_refuses_bad_training_data(tools, tmp_path, data, message):
    file = tmp_path / "values.yaml"
    file.write_text(yaml.safe_dump({"training": {"data": data}}))
    proc = tools.run("helm", "template", "r", CHART, "-f", file, check=False)
    assert proc.returncode != 0, f"accepted {data}"
    assert message in proc.stderr, proc.stderr


def _release(r: Rendered) -> Release:
    hooks = [d for d in r.docs if "helm.sh/hook" in (d["metadata"].get("annotations") or {})]
    return Release(
        name="fashion-classifier",
        namespace=NAMESPACE,
        revision=1,
        status="deployed",
        chart="fashion-classifier-0.1.0",
        app_version="0.1.0",
        values={},
        objects=[d for d in r.docs if d not in hooks],
        hooks=hooks,
    )


def test_cluster_train_jobs_keep_the_placement_and_the_data(render_chart):
    """`fashion-classifier cluster train` copies the release's Job: its pods join the classifier's
    node like the chart's own, and read the same data volume."""
    r = render_chart({"training": {"data": {"existingClaim": "fashion-mnist"}}}, name="data-claim-only")
    chart_spec = _pod_spec(r, "Job", "fashion-classifier-train")
    job = build_job(_release(r), epochs=1, now=datetime(2026, 12, 6, tzinfo=UTC))
    template = job["spec"]["template"]
    assert template["metadata"]["labels"][COLOCATION_LABEL] == "true"
    assert template["spec"]["affinity"] == chart_spec["affinity"]
    assert template["spec"]["volumes"] == chart_spec["volumes"]
    [container] = template["spec"]["containers"]
    assert _env(container)["FC_DATA_DIR"] == "/data"
    assert container["volumeMounts"] == chart_spec["containers"][0]["volumeMounts"]


def _same_specs(helm: Rendered, kustomize: Rendered) -> None:
    h, k = _objects(helm.docs), _objects(kustomize.docs)
    for key in sorted(set(h) & set(k)):
        assert _comparable(h[key]) == _comparable(k[key]), f"{key}: helm and kustomize differ"


def test_kustomize_read_write_many_component_matches_the_chart(render_chart, render_kustomize):
    _same_specs(
        render_chart({"modelStore": {"accessMode": "ReadWriteMany"}}, name="rwx", skip_tests=True),
        render_kustomize("with:read-write-many"),
    )


def test_kustomize_training_data_component_matches_the_chart(render_chart, render_kustomize):
    helm = render_chart(
        {"training": {"data": {"existingClaim": "fashion-classifier-training-data"}}},
        name="data-component",
        skip_tests=True,
    )
    kustomize = render_kustomize("with:training-data")
    _same_specs(helm, kustomize)
    assert _env(_pod_spec(kustomize, "Job", "fashion-classifier-train")["containers"][0])["FC_DATA_DIR"] == "/data"
