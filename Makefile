# Entry points, each doing its own set-up from nothing:
#   make demo   install into .venv (with Pillow, the demo extra) and run fastmix demo: it writes
#               fastmix-demo.png (a picture of every mix) and prints a checked table
#   make test   install into .venv (with the test extra) and run the test suite (on every core)
#   make train  install into .venv (with the train extra) and run `fastmix train --data digits`
#   make parity install into .venv-parity (torch 2.14.1 + the real timm and torchvision) and run
#               tests/parity against them
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

# The parity environment needs the torch build that the registry's torchvision wheels are built
# against (the default CUDA build; next to the CPU build torchvision fails to import), so it is
# its own venv, installed in one resolution with the peers pinned to the versions the parity
# tests were written against (so pip cannot swap the torch build). It takes the `parity` extra,
# not `test`: the test extra's Triton (< 3.7, for the interpreter) conflicts with torch 2.14.1's
# own (~= 3.8), and the parity tests run the CPU path, which needs neither.
PARITY_VENV ?= .venv-parity
PARITY_PY := $(PARITY_VENV)/bin/python
PARITY_PEERS ?= torch==2.14.1 torchvision==0.29.1 timm==1.0.31

$(PARITY_VENV)/.parity: pyproject.toml
	python3 -m venv $(PARITY_VENV)
	$(PARITY_PY) -m pip install -q --upgrade pip
	$(PARITY_PY) -m pip install -q $(PARITY_PEERS) -e ".[parity]"
	$(PARITY_PY) -c "import torch, torchvision, timm; print('parity peers: torch', torch.__version__, \
	    'torchvision', torchvision.__version__, 'timm', timm.__version__)"
	touch $@

$(VENV)/.train: $(VENV)/.base pyproject.toml
	$(PY) -m pip install -q -e ".[train]"
	touch $@

.PHONY: demo test train kernels bench parity
demo: $(VENV)/.demo
	$(VENV)/bin/fastmix demo

test: $(VENV)/.test
	$(PY) -m pytest -q -n auto

train: $(VENV)/.train
	$(VENV)/bin/fastmix train --data digits

kernels: $(VENV)/.test
	$(VENV)/bin/fastmix kernels

bench: $(VENV)/.test
	$(VENV)/bin/fastmix bench

parity: $(PARITY_VENV)/.parity
	$(PARITY_PY) -m pytest -q tests/parity
