# Set-up as a new user does it: `make demo` runs the main job, `make test` runs the tests.
# Both create .venv/ on first use and install everything with the pinned constraints.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
ATLAS  := $(VENV)/bin/atlas
STAMP  := $(VENV)/.installed
PIP    := $(PY) -m pip install --disable-pip-version-check -q -c constraints.txt

# Offline by default: models and data come from installed packages, never from a hub.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

# The web page's browser tests drive Debian's Chromium with Playwright (never `playwright install`,
# which downloads a browser of its own). As root, the test set-up installs chromium with apt-get.
CHROMIUM ?= /usr/bin/chromium

LLAMA  := $(VENV)/.llama-server

# ATLAS_TEST_ALL=1 (set by CI) makes `make test` run the slow tests too.
PYTEST_MARKS := $(if $(ATLAS_TEST_ALL),-m "slow or not slow",)

.PHONY: install demo test test-slow test-fuzz lint docs browser clean

install: $(STAMP)

# Test set-up only: llama.cpp's OpenAI-compatible server, which some slow tests run the agents against.
# It compiles llama.cpp once (several minutes); pip keeps the built wheel in its cache for later installs.
# Built for AVX2, not for the building CPU: a native build on a CPU with AMX crashed (SIGSEGV in llama_decode)
# on any prompt longer than one token, and a wheel cached on one machine may run on another.
LLAMA_CMAKE := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF
$(LLAMA): $(STAMP)
	CMAKE_ARGS='$(LLAMA_CMAKE)' $(PIP) --force-reinstall --no-deps 'llama-cpp-python==0.3.36'
	$(PIP) 'llama-cpp-python[server]==0.3.36'
	@touch $(LLAMA)

$(STAMP): pyproject.toml constraints.txt requirements-nodeps.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) --upgrade pip
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev]'
	$(PY) -m pip install --disable-pip-version-check -q --no-deps -r requirements-nodeps.txt
	@touch $(STAMP)

demo: $(STAMP)
	$(ATLAS) demo

browser:
	@if [ -x $(CHROMIUM) ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's chromium for the browser tests"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
	  echo "note: $(CHROMIUM) is missing and this is not root: the browser tests will be skipped (as root: apt-get install chromium)"; \
	fi

# Lint, layer contracts and types run first: a red check fails the test command.
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

# Rewrites docs/reference/ (settings and CLI) from the code; a test fails when they are stale.
docs: $(STAMP)
	$(PY) -m atlas.cli.reference

test: $(STAMP) browser $(LLAMA) lint
	$(PY) -m pytest $(PYTEST_MARKS)

test-slow: $(STAMP) browser $(LLAMA)
	$(PY) -m pytest -m slow

test-fuzz: $(STAMP)
	ATLAS_FUZZ=nightly $(PY) -m pytest tests/test_fuzz_investigation.py

clean:
	rm -rf $(VENV) .pytest_cache
