# Two commands work on a fresh machine (Python 3.11 + pip): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= /tmp/pyserving-demo
PORT ?= 9000

.PHONY: install demo test lint bench protos

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --progress-bar off -e ".[test,examples]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) examples/tutorial_demo.py --workdir=$(DEMO_DIR) --port=$(PORT)

# The tests use Debian's prometheus and h2load: .ci/system-deps installs them when missing.
test: install
	.ci/system-deps
	$(PY) -m pytest

# mypy through .ci/typecheck.py, which says why it needs a shim (pyproject's package-dir).
lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check . && $(PY) .ci/typecheck.py

bench: install
	.ci/system-deps
	$(PY) -m bench
	$(PY) -m bench.h2load

# Regenerate protos/*_pb2*.py and .pyi from adapters/protos/*.proto (tests check they match).
protos: install
	$(PY) -m pyserving.adapters.protos.generate
