# Two commands for a fresh machine: `make run` and `make test`. Both are idempotent.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: run test test-differential lint schema bench fuzz clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall only when the project's dependencies change.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/graphql-api migrate
	$(BIN)/graphql-api seed --demo
	@echo "\nGraphiQL: http://$(HOST):$(PORT)/graphql"
	@echo "A blank page without internet access? GraphiQL's scripts come from unpkg.com; to serve them from here:"
	@echo "  $(BIN)/graphql-api graphiql-assets graphiql-assets && GRAPHIQL_ASSETS_DIR=graphiql-assets make run\n"
	$(BIN)/graphql-api serve --no-migrate --host $(HOST) --port $(PORT)

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

# The suite with every query it sends answered twice, on the compiled path and on graphql-core's
# executor, which must agree byte for byte (`COMPILED_EXECUTION=false make test` runs the suite
# on graphql-core's executor alone).
test-differential: $(VENV)/.installed-dev
	COMPILED_DIFFERENTIAL=1 $(BIN)/python -m pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy graphql_api

schema: $(VENV)/.installed
	$(BIN)/graphql-api export-schema --output schema.graphql --reference docs/schema.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# The load benchmark (PostgreSQL, wrk, PostGraphile from npm): a tool, not part of `make test`.
bench: $(VENV)/.installed-dev
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# A long fuzzing run (schemathesis over schema.graphql); CI runs a short one inside `make test`.
fuzz: $(VENV)/.installed-dev
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-200} $(BIN)/python -m pytest tests/test_fuzz.py -q
