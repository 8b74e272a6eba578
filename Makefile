# Two entry points for a fresh machine: `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip -q --disable-pip-version-check
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo test lint bench reproduce clean

# torch is installed first and pinned (constraints.txt): an unpinned torch pulls several GB of CUDA wheels.
$(STAMP): pyproject.toml lab/pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(PIP) install torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
	$(PIP) install -c constraints.txt -e ".[dev,onnx,minilm,minilm-l3,serve,lab,tsembed]" 2>&1 | grep -v "^WARNING: Location" || true
	$(PIP) install -c constraints.txt --no-deps -e lab 2>&1 | grep -v "^WARNING: Location" || true
	$(PY) -c "import mote, mote_lab, torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(VENV)/bin/mote demo

test: install
	$(PY) -m pytest -q tests

lint: install
	$(VENV)/bin/ruff check src tests benchmarks lab

bench: install
	$(PY) benchmarks/encode.py

# The MoTE experiments, one file per budget (lab/budgets/<BUDGET>.yaml): BUDGET=small (<= 45 min on a 2-core CPU),
# full (<= 2 h), tune (recipe selection on held-out validation rows), headline, curve, ..., gpu; resumable.
# Reports: docs/results*.md.
BUDGET ?= small
reproduce: install
	$(VENV)/bin/mote-lab reproduce lab/budgets/$(BUDGET).yaml

clean:
	rm -rf $(VENV) .pytest_cache
