# Two commands set up and run everything on a fresh machine (Python >= 3.11 needed):
#   make demo   route the bundled sample workload (no API key, no network)
#   make test   the whole test suite, offline, on recorded cassettes (installs the
#               LiteLLM proxy's packages too: one test runs a real proxy on loopback)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,litellm-proxy]"
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/routedllm demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/decide_speed.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
