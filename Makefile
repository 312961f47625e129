SHELL := /bin/bash
# One-command setup: every target creates the virtual environment and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)
BUF := npx --yes @bufbuild/buf@1.47.2

.PHONY: install run test proto proto-check lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

run: install  ## serve on loopback, open (no credentials), on the SQLite default (migrates first)
	SCHEDULE_GRPC_ADDRESS=$${SCHEDULE_GRPC_ADDRESS:-127.0.0.1:50051} \
	SCHEDULE_HTTP_ADDRESS=$${SCHEDULE_HTTP_ADDRESS:-127.0.0.1:8080} \
	SCHEDULE_EGRESS_ALLOW=$${SCHEDULE_EGRESS_ALLOW:-127.0.0.0/8,::1} $(PY) server.py

test: install  ## the whole suite, with line coverage
	$(PY) -m pytest $(PYTEST_ARGS)

proto: install  ## regenerate generated/ from proto/
	$(PY) scripts/gen_proto.py

proto-check: install  ## fail when generated/ is stale
	$(PY) scripts/gen_proto.py --check

lint: install  ## ruff, mypy --strict, the import contracts (pyproject.toml), buf lint
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy schedule_grpc server.py scripts tests
	$(VENV)/bin/lint-imports
	$(BUF) lint

bench: install  ## RPC latency against its floors (needs Postgres)
	$(PY) scripts/bench_rpc.py

clean:
	rm -rf $(VENV) .build .pytest_cache .mypy_cache .ruff_cache schedule.db*
