"""The LiteRT predictor: same probabilities as the export check and as Keras, any batch size."""

from __future__ import annotations

import numpy as np
import pytest

from fashion_classifier.artifacts import export, store
from fashion_classifier.inference.predictor import MAX_CHUNK, ModelLoadError, Predictor, validate
from fashion_classifier.inference.preprocess import prepare_image


def test_batch_sizes_give_identical_probabilities(loaded_model, test_split):
    x = test_split[0][:64].astype(np.float32) / 255.0
    predictor = loaded_model.predictor
    whole = predictor.predict(x)
    assert whole.shape == (64, 10) and whole.dtype == np.float32
    assert np.allclose(whole.sum(axis=1), 1.0, atol=1e-5)
    singles = np.concatenate([predictor.predict(x[i : i + 1]) for i in range(64)])
    mixed = np.concatenate([predictor.predict(x[:5]), predictor.predict(x[5:6]), predictor.predict(x[6:])])
    assert np.array_equal(singles, whole) or np.abs(singles - whole).max() < 1e-6
    assert np.abs(mixed - whole).max() < 1e-6


def test_batches_larger_than_one_chunk(loaded_model, test_split):
    x = test_split[0][: MAX_CHUNK + 37].astype(np.float32) / 255.0
    probs = loaded_model.predictor.predict(x)
    assert probs.shape == (MAX_CHUNK + 37, 10)
    assert np.abs(probs[-37:] - loaded_model.predictor.predict(x[-37:])).max() < 1e-6


def test_matches_the_export_check(loaded_model, default_version_dir, test_split):
    x = test_split[0][:500].astype(np.float32) / 255.0
    reference = export.tflite_probabilities(default_version_dir / store.TFLITE, x)
    assert np.abs(loaded_model.predictor.predict(x) - reference).max() <= 1e-6


def test_the_default_model_reads_a_mirrored_garment_as_the_original(loaded_model, test_split):
    """A shoe facing right gets the probabilities of the same shoe facing left, to the bit."""
    x = test_split[0][:200].astype(np.float32) / 255.0
    predictor = loaded_model.predictor
    assert np.array_equal(predictor.predict(np.ascontiguousarray(x[:, :, ::-1])), predictor.predict(x))


def test_png_uploads_are_classified_as_keras_would(loaded_model, default_version_dir, test_split, encode):
    """Real test images, saved as PNG and preprocessed, against the Keras model itself."""
    # The [train] extra (TensorFlow): test-only imports, never in serving.
    from fashion_classifier.training import architectures, calibration

    images, labels = test_split
    x = images[:1000]
    pixels = np.stack([prepare_image(encode(img)).pixels for img in x])
    lite = loaded_model.predictor.predict(pixels)
    model = architectures.load(default_version_dir / store.KERAS)
    logits = model(x.astype(np.float32) / 255.0, training=False).numpy()
    reference = calibration.softmax(logits, loaded_model.metadata["calibration"]["temperature"])
    # 1e-4, not the export check's 1e-5: the shipped version's metadata rounds its temperature
    # to 4 decimals (1.1228); newer versions record it exactly.
    assert np.abs(lite - reference).max() <= 1e-4
    assert (lite.argmax(1) == reference.argmax(1)).all()
    assert (lite.argmax(1) == labels[:1000]).mean() > 0.8


def test_wrong_input_shape_is_a_value_error(loaded_model):
    with pytest.raises(ValueError):
        loaded_model.predictor.predict(np.zeros((2, 28, 27), dtype=np.float32))
    assert loaded_model.predictor.predict(np.zeros((0, 28, 28), dtype=np.float32)).shape == (0, 10)


def test_garbage_file_is_a_load_error(tmp_path):
    bad = tmp_path / "model.tflite"
    bad.write_bytes(b"not a flatbuffer at all" * 10)
    with pytest.raises(ModelLoadError):
        Predictor(bad)


class _Fake:
    def __init__(self, output):
        self.output = output

    def predict(self, batch):
        return self.output(batch)


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (lambda b: np.full((len(b), 10), 3.0, np.float32), "sum to"),  # logits, no softmax
        (lambda b: np.full((len(b), 5), 0.2, np.float32), "output shape"),
        (lambda b: np.full((len(b), 10), np.nan, np.float32), "not probabilities"),
    ],
)
def test_validation_refuses_models_that_do_not_output_probabilities(output, message):
    with pytest.raises(ModelLoadError, match=message):
        validate(_Fake(output))


def test_validation_accepts_the_real_model(loaded_model):
    validate(loaded_model.predictor)
