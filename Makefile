# holdwatch: `make demo` runs the main job, `make test` runs every test against a real Kafka broker.
# Needs Python 3.11, Java 17 and Maven (the broker jars come from Maven Central on first use).

PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.holdwatch-installed
PACKAGES := streams schemas alerting devtools

.DEFAULT_GOAL := help
.PHONY: help install system-deps lint test demo broker-start broker-stop bench schemas clean

help: ## list the targets
	@echo "holdwatch: make <target>"
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | \
		awk 'BEGIN {FS = ":.*## "}; {printf "  %-14s %s\n", $$1, $$2}'

$(BIN)/python:
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: install Python 3.11 (or make PYTHON=/path/to/python3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install holdwatch with its dev tools (fast when up to date)

system-deps: ## Debian's prometheus (promtool, a real server) and chromium + chromium-driver (board tests)
	@command -v promtool >/dev/null && command -v prometheus >/dev/null && \
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
			prometheus chromium chromium-driver >/dev/null; }

lint: install ## ruff + mypy --strict on the packages
	$(BIN)/ruff check .
	$(BIN)/mypy --strict $(PACKAGES)

test: install system-deps lint ## lint, then the whole test suite (unit + integration, real Kafka broker)
	$(BIN)/pytest -q

demo: install ## run the main job (local broker, topics, simulated traffic, alerts)
	$(BIN)/holdwatch demo

broker-start: install ## start the local Kafka broker in the background
	$(BIN)/holdwatch broker start

broker-stop: install ## stop the local Kafka broker
	$(BIN)/holdwatch broker stop

bench: install ## run the benchmarks (ratios measured side by side)
	@set -e; for bench in bench/bench_*.py; do echo "== $$bench"; PYTHONPATH=. $(BIN)/python $$bench; done

schemas: install ## regenerate the JSON Schemas of the wire models
	$(BIN)/holdwatch schemas export

clean: ## remove caches and build output (keeps .venv and the broker jar cache)
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
