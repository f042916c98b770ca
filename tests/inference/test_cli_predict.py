"""`fashion-classifier predict FILE...` (the model commands call inference.cli_predict)."""

from __future__ import annotations

import json

import pytest

from fashion_classifier.artifacts import store
from fashion_classifier.config import CLASS_NAMES
from fashion_classifier.inference.cli_predict import predict_files


def test_predicts_files_and_reports_bad_ones(tmp_path, test_split, encode, model_store, capsys):
    images, _ = test_split
    good = tmp_path / "boot.png"
    good.write_bytes(encode(images[0]))
    text = tmp_path / "notes.png"  # the name does not make it an image
    text.write_text("hello")
    assert predict_files(model_store, [good, text, tmp_path / "missing.png"], as_json=True) == 2
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert lines[0]["label"] in CLASS_NAMES and lines[0]["model_version"] == store.current_version(model_store)
    assert "unsupported image type" in lines[1]["error"]
    assert lines[2]["error"]
    assert predict_files(model_store, [good]) == 0
    assert capsys.readouterr().out.startswith(f"{good}: ")


def test_no_model_is_an_artifact_error(tmp_path):
    with pytest.raises(store.ArtifactError):
        predict_files(tmp_path / "empty", [tmp_path / "x.png"])
