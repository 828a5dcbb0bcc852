# Two commands work on a fresh machine (Python 3.11 + pip): `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_DIR ?= /tmp/pyserving-demo
PORT ?= 9000

.PHONY: install demo test lint bench

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --progress-bar off -e ".[test,examples]"
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) examples/tutorial_demo.py --workdir=$(DEMO_DIR) --port=$(PORT)

test: install
	$(PY) -m pytest

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: install
	command -v h2load >/dev/null 2>&1 || (apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client)
	$(PY) -m bench
	$(PY) -m bench.h2load
