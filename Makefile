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

setup:
	scripts/setup all

# Refresh the lock files in requirements/ after editing pyproject.toml (docs/development.md).
lock:
	scripts/lock

lint:
	$(BIN)/ruff check src tests bench

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
