import gzip
import shutil

import numpy as np
import pytest

from fashion_classifier import data


def test_loads_official_files(dataset):
    assert dataset.x_train.shape == (60_000, 28, 28) and dataset.x_train.dtype == np.uint8
    assert dataset.y_train.shape == (60_000,)
    assert dataset.x_test.shape == (10_000, 28, 28)
    assert set(np.unique(dataset.y_test)) == set(range(10))
    assert np.bincount(dataset.y_test).tolist() == [1000] * 10
    # The official training set's pixel mean and standard deviation pin the decoding byte for byte.
    assert dataset.x_train.mean() == pytest.approx(72.9404, abs=1e-3)
    assert dataset.x_train.std() == pytest.approx(90.0212, abs=1e-3)
    assert dataset.checksums == {name: sha for name, (_md5, sha) in data.FILES.items()}


def test_checksums_match_official_md5(data_dir):
    import hashlib

    for name, (md5, _sha) in data.FILES.items():
        assert hashlib.md5((data_dir / name).read_bytes()).hexdigest() == md5


def _copy(data_dir, tmp_path):
    for name in data.FILES:
        shutil.copy(data_dir / name, tmp_path / name)
    return tmp_path


def test_missing_file_is_named(data_dir, tmp_path):
    d = _copy(data_dir, tmp_path)
    (d / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(data.DatasetError, match="t10k-labels-idx1-ubyte.gz is missing"):
        data.load_dir(d)


def test_truncated_file_fails_checksum(data_dir, tmp_path):
    d = _copy(data_dir, tmp_path)
    path = d / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(data.DatasetError, match="train-labels-idx1-ubyte.gz has the wrong checksum"):
        data.load_dir(d)


def test_wrong_checksum_is_named(data_dir, tmp_path):
    d = _copy(data_dir, tmp_path)
    raw = bytearray((d / "t10k-images-idx3-ubyte.gz").read_bytes())
    raw[-10] ^= 0xFF
    (d / "t10k-images-idx3-ubyte.gz").write_bytes(bytes(raw))
    with pytest.raises(data.DatasetError, match="t10k-images-idx3-ubyte.gz has the wrong checksum"):
        data.load_dir(d)


def test_missing_directory(tmp_path):
    with pytest.raises(data.DatasetError, match="does not exist"):
        data.load_dir(tmp_path / "nope")


def test_read_idx_rejects_truncated_payload(tmp_path):
    path = tmp_path / "x.gz"
    header = (2051).to_bytes(4, "big") + (2).to_bytes(4, "big") + (28).to_bytes(4, "big") * 2
    with gzip.open(path, "wb") as fh:
        fh.write(header + bytes(28 * 28))  # promises two images, holds one
    with pytest.raises(data.DatasetError, match="header promises 1568"):
        data.read_idx(path, data.IMAGE_MAGIC)


def test_read_idx_rejects_wrong_magic_and_non_gzip(tmp_path):
    path = tmp_path / "x.gz"
    with gzip.open(path, "wb") as fh:
        fh.write((2049).to_bytes(4, "big") + (1).to_bytes(4, "big") + b"\x03")
    with pytest.raises(data.DatasetError, match="magic 2049, expected 2051"):
        data.read_idx(path, data.IMAGE_MAGIC)
    assert data.read_idx(path, data.LABEL_MAGIC).tolist() == [3]
    path.write_bytes(b"not gzip at all")
    with pytest.raises(data.DatasetError, match="not a readable gzip"):
        data.read_idx(path, data.LABEL_MAGIC)
