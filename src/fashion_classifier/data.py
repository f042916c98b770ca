"""Fashion-MNIST from the four official IDX files, verified against the official checksums.

Images come back as ``uint8`` arrays of shape ``(n, 28, 28)`` and labels as ``uint8`` of
shape ``(n,)``. Scaling to [0, 1] is the model's business (see ``training``), so these arrays
are byte-identical to the files.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fashion_classifier.checksums import sha256_file

# The official files and their MD5 sums as published by the dataset's authors, with SHA-256
# of the same bytes (the MD5s identify the files; SHA-256 is what we verify).
FILES: dict[str, tuple[str, str]] = {
    "train-images-idx3-ubyte.gz": (
        "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    ),
    "train-labels-idx1-ubyte.gz": (
        "25c81989df183df01b3e8a0aad5dffbe",
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    ),
    "t10k-images-idx3-ubyte.gz": (
        "bef4ecab320f06d8554ea6380940ec79",
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    ),
    "t10k-labels-idx1-ubyte.gz": (
        "bb300cfdad3c16e7a12a480ee83cd310",
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    ),
}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
IMAGE_SIZE = 28


class DatasetError(Exception):
    """A dataset file is missing, corrupt or inconsistent; the message names the file."""


@dataclass(frozen=True)
class Dataset:
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    checksums: dict[str, str]  # file name -> sha256 ("keras.datasets" when downloaded by Keras)
    source: str  # the directory, or "keras.datasets.fashion_mnist"

    def limit(self, n_train: int | None = None, n_test: int | None = None) -> Dataset:
        """The first ``n`` examples of each split (for quick runs and tests)."""
        return Dataset(
            self.x_train[:n_train],
            self.y_train[:n_train],
            self.x_test[:n_test],
            self.y_test[:n_test],
            self.checksums,
            self.source,
        )


def verify_files(data_dir: Path) -> dict[str, str]:
    """Check that all four files exist and match the official checksums; return their sha256."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetError(f"data directory {data_dir} does not exist")
    sums = {}
    for name, (_md5, expected) in FILES.items():
        path = data_dir / name
        if not path.is_file():
            raise DatasetError(f"{path} is missing (expected the official Fashion-MNIST file {name})")
        actual = sha256_file(path)
        if actual != expected:
            raise DatasetError(
                f"{path} has the wrong checksum (sha256 {actual[:16]}…, expected {expected[:16]}…): "
                "the file is corrupt, truncated or not the official one"
            )
        sums[name] = actual
    return sums


def read_idx(path: Path, magic: int) -> np.ndarray:
    """Parse one gzip-compressed IDX file (images: magic 2051, labels: magic 2049)."""
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DatasetError(f"{path} is not a readable gzip file: {exc}") from None
    if len(raw) < 4:
        raise DatasetError(f"{path} is truncated: {len(raw)} bytes, shorter than its header")
    (found,) = struct.unpack(">I", raw[:4])
    if found != magic:
        raise DatasetError(f"{path} has IDX magic {found}, expected {magic}")
    ndim = 3 if magic == IMAGE_MAGIC else 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DatasetError(f"{path} is truncated: {len(raw)} bytes, shorter than its header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise DatasetError(f"{path} holds {len(raw) - header} data bytes, its header promises {expected}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_dir(data_dir: Path, verify: bool = True) -> Dataset:
    """Load the four IDX files from ``data_dir``, verifying checksums first."""
    data_dir = Path(data_dir)
    sums = verify_files(data_dir) if verify else {name: "unverified" for name in FILES}
    x_train = read_idx(data_dir / "train-images-idx3-ubyte.gz", IMAGE_MAGIC)
    y_train = read_idx(data_dir / "train-labels-idx1-ubyte.gz", LABEL_MAGIC)
    x_test = read_idx(data_dir / "t10k-images-idx3-ubyte.gz", IMAGE_MAGIC)
    y_test = read_idx(data_dir / "t10k-labels-idx1-ubyte.gz", LABEL_MAGIC)
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.shape[0] != y.shape[0]:
            raise DatasetError(f"{split} split has {x.shape[0]} images but {y.shape[0]} labels")
        if x.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise DatasetError(f"{split} images are {x.shape[1:]}, expected 28x28")
    return Dataset(x_train, y_train, x_test, y_test, sums, str(data_dir))


def load_keras() -> Dataset:
    """Download with Keras (needs internet): for users who give no data directory."""
    try:
        from keras.datasets import fashion_mnist  # TensorFlow is a training-only dependency
    except ImportError as exc:
        raise DatasetError(f"no data directory given and Keras is not installed ({exc})") from None
    try:
        (x_train, y_train), (x_test, y_test) = fashion_mnist.load_data()
    except Exception as exc:  # network errors surface as many types
        raise DatasetError(
            f"no data directory given (--data-dir / FC_DATA_DIR) and the download failed: {exc}"
        ) from None
    sums = dict.fromkeys(FILES, "keras.datasets")
    return Dataset(x_train, y_train, x_test, y_test, sums, "keras.datasets.fashion_mnist")


def load(data_dir: Path | None) -> Dataset:
    """The dataset from ``data_dir``, or downloaded by Keras when no directory is given."""
    return load_dir(data_dir) if data_dir is not None else load_keras()
