# syntax=docker/dockerfile:1
# Two images from one file, both running the same package:
#   serve  (default, small): the package without extras: gunicorn + LiteRT, no TensorFlow, no
#     Kubernetes client; embeds the default model.
#     docker build --target serve -t fashion-classifier:0.1.0 .
#   train: adds the [train] extra (TensorFlow CPU, matplotlib) for `fashion-classifier train`, and
#     the [cluster] extra (the Kubernetes client) for the kustomize base's Secrets Job.
#     docker build --target train -t fashion-classifier-train:0.1.0 .
# BASE must be a Debian-like image with Python 3.11 and its venv module; CI passes one made with
# debootstrap (scripts/image-build) because it has no registry to pull from.
ARG BASE=python:3.11-slim-bookworm

# ---- build: one virtualenv per target, compiled and trimmed, then copied whole ----------------
FROM ${BASE} AS build-base
# uv verifies TLS against this bundle (its default is a built-in one) and, as pip does, compiles
# the bytecode at install time (the app's user cannot write it into /opt/venv).
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    UV_NO_CACHE=1 \
    UV_COMPILE_BYTECODE=1 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
# Every package from a lock file (scripts/lock): exact versions, each file checked against its
# sha256, the build backend and the installers included, so two builds of one commit install the
# same bytes. pip installs build.txt (pip, uv, the build backend); uv, faster, the rest.
COPY requirements/build.txt requirements/serve.txt requirements/train.txt ./requirements/
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-warn-script-location --require-hashes --only-binary :all: -r requirements/build.txt
COPY pyproject.toml README*.md ./
COPY src ./src

FROM build-base AS build-serve
COPY model ./model
COPY docker/check-serving-venv.py ./
RUN /opt/venv/bin/uv pip install -q --python /opt/venv/bin/python --require-hashes --only-binary :all: -r requirements/serve.txt \
 && /opt/venv/bin/uv pip install -q --python /opt/venv/bin/python --no-deps --no-build-isolation . \
 && /opt/venv/bin/pip uninstall -y -q pip setuptools wheel packaging uv \
 # Not needed to serve on a CPU: LiteRT's WebGPU accelerator, vendor NPU plugins and compiler
 # tools; numpy's test suites, build tools (distutils, f2py) and type stubs; the Swagger UI files
 # /docs does not load; and Pillow's optional decoders and font engine (AVIF, WebP, FreeType):
 # uploads are PNG, JPEG, GIF or BMP only, and fewer decoders exposed to untrusted bytes is safer too.
 && cd /opt/venv/lib/python3.11/site-packages \
 && rm -rf ai_edge_litert/libLiteRtWebGpuAccelerator.so ai_edge_litert/vendors ai_edge_litert/tools \
      numpy/*/tests numpy/tests numpy/distutils numpy/f2py \
 && find numpy -name '*.pyi' -delete \
 && find flask_swagger_ui/dist -type f ! -name swagger-ui-bundle.js ! -name swagger-ui.css ! -name LICENSE -delete \
 && rm -rf \
      PIL/_avif.* PIL/_webp.* PIL/_imagingft.* PIL/_imagingtk.* pillow.libs/libavif-* pillow.libs/libwebp* \
      pillow.libs/libsharpyuv-* pillow.libs/libfreetype-* pillow.libs/libharfbuzz-* pillow.libs/libbrotli* \
 && cd /src && /opt/venv/bin/python check-serving-venv.py model

FROM build-base AS build-train
RUN /opt/venv/bin/uv pip install -q --python /opt/venv/bin/python --require-hashes --only-binary :all: -r requirements/train.txt \
 && /opt/venv/bin/uv pip install -q --python /opt/venv/bin/python --no-deps --no-build-isolation . \
 && /opt/venv/bin/pip uninstall -y -q pip uv

# ---- runtime: what both targets share ----------------------------------------------------------
FROM ${BASE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/fashion-classifier/fashion-classifier" \
      org.opencontainers.image.vendor="fashion-classifier"
# The app runs as uid 10001 (the Kubernetes manifests set the same ids); /models is the model
# store (a volume in practice) and /var/lib/fashion-classifier holds the prediction-log spool.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin app \
 && mkdir -p /models /var/lib/fashion-classifier/spool \
 && chown -R app:app /models /var/lib/fashion-classifier
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    FC_HOST=0.0.0.0 \
    FC_PORT=8000 \
    FC_GRPC_PORT=8081 \
    FC_MODEL_DIR=/models \
    FC_SPOOL_DIR=/var/lib/fashion-classifier/spool \
    FC_SQLITE_PATH=/var/lib/fashion-classifier/predictions.sqlite3
WORKDIR /var/lib/fashion-classifier

# ---- train --------------------------------------------------------------------------------------
FROM runtime AS train
COPY --from=build-train /opt/venv /opt/venv
# keras caches downloads under $HOME; the app user has none.
ENV HOME=/tmp
USER 10001:10001
CMD ["fashion-classifier", "train", "--model-dir", "/models", "--quiet"]
# The revision comes last: a per-build value would invalidate every cached layer below it.
# FC_BUILD_COMMIT carries it into the process too (the commit label of fc_build_info).
ARG REVISION=unknown
ENV FC_BUILD_COMMIT="${REVISION}"
LABEL org.opencontainers.image.title="fashion-classifier-train" \
      org.opencontainers.image.description="Fashion-MNIST classifier: training image (TensorFlow CPU)" \
      org.opencontainers.image.revision="${REVISION}"

# ---- serve (last, so a plain `docker build .` gives the serving image) -------------------------
FROM runtime AS serve
COPY --from=build-serve /opt/venv /opt/venv
COPY docker/fc-seed-model /usr/local/bin/fc-seed-model
# The default model, served by a plain `docker run`; Kubernetes points FC_MODEL_DIR at the shared
# volume (/models) and its init container seeds an empty volume from here (fc-seed-model).
COPY model /opt/fashion-classifier/model
ENV FC_MODEL_DIR=/opt/fashion-classifier/model
USER 10001:10001
# 8000: the app (FC_PORT); 8081: the Open Inference Protocol over gRPC (FC_GRPC_PORT, as KServe);
# 9464: Prometheus metrics, served by the gunicorn master (FC_METRICS_PORT)
EXPOSE 8000 8081 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v2/health/live' % os.environ.get('FC_PORT', '8000'), timeout=4)"]
CMD ["fashion-classifier", "serve"]
# The revision comes last: a per-build value would invalidate every cached layer below it.
# FC_BUILD_COMMIT carries it into the process too (the commit label of fc_build_info).
ARG REVISION=unknown
ENV FC_BUILD_COMMIT="${REVISION}"
LABEL org.opencontainers.image.title="fashion-classifier" \
      org.opencontainers.image.description="Fashion-MNIST classifier: LiteRT serving (gunicorn), no TensorFlow" \
      org.opencontainers.image.revision="${REVISION}"
