# cartoflow: one venv in .venv, torch's CPU wheel first (an unpinned torch pulls a CUDA build).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
WORKSPACE ?= workspace
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: setup setup-browser demo test test-fast test-slow lint bench clean-workspace

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

## One active-learning round on the bundled demo data, simulated annotator, embedded Prefect.
demo: setup
	$(BIN)/cartoflow round --annotator simulated:true_label --workspace $(WORKSPACE)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Debian's Chromium and chromedriver, for the browser tests in tests/deployments/ (root or sudo).
setup-browser:
	@if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then \
		SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium chromium-driver \
			>/dev/null; \
	fi

## Lint, types, and the whole test suite (slow end-to-end tests included), as CI runs it.
test: lint
	$(BIN)/python -m pytest -m "" -q

test-fast: setup
	$(BIN)/python -m pytest -q

test-slow: setup
	$(BIN)/python -m pytest -m slow -q

bench: setup
	$(BIN)/python benchmarks/run_all.py
