# Two commands set up and run everything on a fresh machine (Python >= 3.11 needed):
#   make demo   route the bundled sample workload (no API key, no network)
#   make test   the whole test suite, offline, on recorded cassettes (installs the
#               LiteLLM proxy's packages too: one test runs a real proxy on loopback)
# and, while working on the code:
#   make lint       ruff check and ruff format --check
#   make type       mypy (settings in pyproject.toml)
#   make test-fast  the suite without the tests that start servers on loopback
#   make bench      the decision speed benchmark
#   make bench-quick  every benchmark in quick mode, failing on a ratio more than 25% worse
#                   than benchmarks/baselines.json (~3 min on 2 cores; a separate CI job)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
LINTED := src tests benchmarks scripts integrations

.PHONY: demo test test-fast lint type bench bench-quick clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test,litellm-proxy]"
	touch $@ $(VENV)/.installed

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/routedllm demo

test: $(VENV)/.installed-test
	$(BIN)/python -m pytest

test-fast: $(VENV)/.installed-test
	$(BIN)/python -m pytest -m "not loopback"

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

# mypy checks against the optional packages too (litellm, redis, OpenTelemetry...).
type: $(VENV)/.installed-dev $(VENV)/.installed-test
	$(BIN)/mypy

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/decide_speed.py

# Needs the eval extra (numpy) and langchain-openai, which the test install brings.
bench-quick: $(VENV)/.installed-test
	$(BIN)/python benchmarks/quick.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
