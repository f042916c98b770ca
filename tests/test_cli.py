"""The command's contract: help, one-line errors, exit codes."""

import json
import subprocess
import sys

import pytest

from fashion_classifier.artifacts import store


def run(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "fashion_classifier.cli", *args], capture_output=True, text=True, timeout=300, env=env
    )


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "versions", "config"])
def test_help(command):
    done = run(command, "--help")
    assert done.returncode == 0
    assert f"fashion-classifier {command}" in done.stdout


def test_unknown_command_and_bad_values_exit_2():
    assert run("frobnicate").returncode == 2
    done = run("train", "--epochs", "zero")
    assert done.returncode == 2 and "'zero' is not a whole number" in done.stderr
    assert run("train", "--arch", "resnet").returncode == 2


def test_missing_data_is_one_line_exit_3(tmp_path):
    done = run("train", "--data-dir", str(tmp_path), "--model-dir", str(tmp_path / "m"))
    assert done.returncode == 3
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "train-images-idx3-ubyte.gz is missing" in lines[0]
    assert not (tmp_path / "m").exists()


def test_bad_environment_value_is_one_line(tmp_path):
    import os

    done = run("config", env={**os.environ, "FC_PORT": "eighty"})
    assert done.returncode == 2
    assert done.stderr.strip() == "fashion-classifier config: configuration error: FC_PORT='eighty' is not an integer"


def test_config_masks_password():
    import os

    done = run("config", env={**os.environ, "FC_CASSANDRA_PASSWORD": "s3cret"})
    assert done.returncode == 0 and "s3cret" not in done.stdout and "********" in done.stdout


def test_evaluate_reproduces_metadata_without_tensorflow(model_store, data_dir):
    done = run("evaluate", "--model-dir", str(model_store), "--data-dir", str(data_dir), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    meta = store.load_metadata(store.current_path(model_store))
    assert result["version"] == meta["version"]
    assert result["test_accuracy"] == pytest.approx(meta["test_accuracy"], abs=1e-4)
    assert result["confusion_matrix"] == meta["confusion_matrix"]


def test_evaluate_and_versions_on_empty_store(tmp_path, data_dir):
    done = run("evaluate", "--model-dir", str(tmp_path), "--data-dir", str(data_dir))
    assert done.returncode == 3 and "no model published" in done.stderr
    assert run("versions", "--model-dir", str(tmp_path)).returncode == 3


def test_versions_marks_current(model_store):
    done = run("versions", "--model-dir", str(model_store))
    assert done.returncode == 0
    marked = [line for line in done.stdout.splitlines() if line.startswith("* ")]
    assert len(marked) == 1 and marked[0].startswith(f"* {store.current_version(model_store)} ")
