# The README's two commands: `make run` (the web app on the embedded defaults) and `make test`
# (everything, from a fresh machine). The rest are conveniences.
.PHONY: run test setup lint train model bench cassandra-up cassandra-down

VENV ?= .venv
BIN := $(VENV)/bin

run:
	@scripts/setup python
	$(BIN)/fashion-classifier serve

test:
	scripts/test

setup:
	scripts/setup all

lint:
	$(BIN)/ruff check src tests bench

# Train a new version into FC_MODEL_DIR (default: model/). ARCH=cnn for the convolutional net.
ARCH ?= mlp
train:
	$(BIN)/fashion-classifier train --arch $(ARCH) --data-dir ../shared/data/fashion-mnist

# Regenerate the default artifact shipped in model/ (keeps only the new version).
model:
	rm -rf model.new && $(BIN)/fashion-classifier train --arch mlp --model-dir model.new \
	  --data-dir ../shared/data/fashion-mnist --keep 1 && rm -rf model && mv model.new model

cassandra-up:
	scripts/cassandra-local start

cassandra-down:
	scripts/cassandra-local stop
