# Entry points, each doing its own set-up from nothing:
#   make demo   install into .venv and run the demonstration (fastmix demo)
#   make test   install into .venv (with the test extra) and run the test suite
#   make train  install into .venv (with the train extra) and run `fastmix train --data digits`
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

$(VENV)/.test: $(VENV)/.base pyproject.toml
	$(PY) -m pip install -q "$(TRITON)" -e ".[test]"
	touch $@

$(VENV)/.train: $(VENV)/.base pyproject.toml
	$(PY) -m pip install -q -e ".[train]"
	touch $@

.PHONY: demo test train kernels bench
demo: $(VENV)/.base
	$(VENV)/bin/fastmix demo

test: $(VENV)/.test
	$(PY) -m pytest -q

train: $(VENV)/.train
	$(VENV)/bin/fastmix train --data digits

kernels: $(VENV)/.test
	$(VENV)/bin/fastmix kernels

bench: $(VENV)/.test
	$(PY) benchmarks/compare.py
