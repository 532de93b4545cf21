# Two entry points, each doing its own set-up from nothing:
#   make demo   install into .venv (with Pillow, the demo extra) and run fastmix demo: it writes
#               fastmix-demo.png (a picture of every mix) and prints a checked table
#   make test   install into .venv (with the test extra) and run the test suite
# TORCH pins the version, not the build: pip takes a local CPU wheel where one exists (CI) and
# PyPI's default (CUDA on Linux) elsewhere. Override with `make test TORCH=torch`.
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
TRITON ?= triton==3.6.0

$(VENV)/.base:
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.demo: $(VENV)/.base pyproject.toml
	$(PY) -m pip install -q -e ".[demo]"
	touch $@

$(VENV)/.test: $(VENV)/.base pyproject.toml
	$(PY) -m pip install -q "$(TRITON)" -e ".[test]"
	touch $@

.PHONY: demo test kernels bench
demo: $(VENV)/.demo
	$(VENV)/bin/fastmix demo

test: $(VENV)/.test
	$(PY) -m pytest -q

kernels: $(VENV)/.test
	$(VENV)/bin/fastmix kernels

bench: $(VENV)/.test
	$(VENV)/bin/fastmix bench
