# The README's two commands: `make run` (the web app on the embedded defaults) and `make test`
# (everything, from a fresh machine). The rest are conveniences.
.PHONY: run test setup lock lint train model bench cassandra-up cassandra-down

VENV ?= .venv
BIN := $(VENV)/bin

run:
	@scripts/setup python
	$(BIN)/fashion-classifier serve

test:
	scripts/test

# The inner loop, once `make setup` (or `make test`) has installed everything: lint, then the
# unit-level tests without Cassandra, images, the control plane, Chromium or Prometheus, without
# those marked slow, and without the modules that drive whole server processes (the slowest:
# run tests/server and tests/oip_grpc after changing them). Under 3 minutes on 2 cores.
FAST_TESTS := tests/test_data.py tests/test_cli.py tests/test_docs.py tests/test_dependencies.py \
  tests/test_rollout_guard.py tests/artifacts tests/training tests/inference tests/web tests/server \
  tests/oip_grpc tests/predlog
FAST_SKIPPED := tests/server/test_keepalive_worker.py tests/server/test_gunicorn_serve.py \
  tests/server/test_gunicorn_rollout.py tests/server/test_metrics_server.py tests/server/test_json_logs.py \
  tests/oip_grpc/test_server.py tests/oip_grpc/test_supervisor.py tests/oip_grpc/test_kserve_client.py
.PHONY: test-fast
test-fast: lint
	$(BIN)/pytest -q $(FAST_TESTS) $(addprefix --ignore=,$(FAST_SKIPPED)) \
	  -m "not cassandra and not cassandra3 and not slow"

setup:
	scripts/setup all

# Refresh the lock files in requirements/ after editing pyproject.toml (docs/development.md).
lock:
	scripts/lock

lint:
	$(BIN)/ruff check src tests bench scripts/lib
	$(BIN)/ruff format --check src tests bench scripts/lib

# Train a new version into FC_MODEL_DIR (default: model/). ARCH=mlp for the TensorFlow tutorial's model.
ARCH ?= compact
train:
	$(BIN)/fashion-classifier train --arch $(ARCH) --data-dir ../shared/data/fashion-mnist

# Regenerate the default artifact shipped in model/: a new compact version, current, next to the
# TensorFlow tutorial's MLP (kept for comparison and rollback).
model:
	rm -rf model.new && mkdir -p model.new/versions && cp -r model/versions/*-mlp-* model.new/versions/ \
	  && $(BIN)/fashion-classifier train --arch compact --model-dir model.new \
	  --data-dir ../shared/data/fashion-mnist --keep 2 && rm -rf model && mv model.new model

cassandra-up:
	scripts/cassandra-local start

cassandra-down:
	scripts/cassandra-local stop
