"""Build-time check of the serving virtualenv (run by the Dockerfile's build-serve stage).

After the trimming, the command line must still load, TensorFlow must be absent, every upload
format the service accepts must decode, the /docs page's files (Swagger UI's, from its package)
must be there, and the default model must load and classify through LiteRT, as the server will do.
"""

import importlib.util
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from fashion_classifier.artifacts import store
from fashion_classifier.inference.loader import load_version
from fashion_classifier.inference.preprocess import SUPPORTED_FORMATS, prepare_image
from fashion_classifier.web import api_docs

assert importlib.util.find_spec("tensorflow") is None, "TensorFlow must not be in the serving image"
subprocess.run([Path(sys.executable).parent / "fashion-classifier", "--help"], check=True, stdout=subprocess.DEVNULL)
for fmt in SUPPORTED_FORMATS:
    buffer = io.BytesIO()
    Image.new("L", (40, 30), 200).save(buffer, format=fmt)
    prepare_image(buffer.getvalue())
api_docs.assets()  # reads every file /docs serves: one trimmed away fails here
loaded = load_version(store.current_path(Path(sys.argv[1])))
probs = loaded.predictor.predict(np.zeros((2, 28, 28), dtype=np.float32))
assert probs.shape == (2, 10) and np.allclose(probs.sum(axis=1), 1, atol=1e-4), probs
print(f"serving venv OK: {loaded.version} loads and predicts")
