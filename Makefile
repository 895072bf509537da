# tenantgate — every command a developer or CI needs. `make help` lists them.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The virtualenv is set up once per change of pyproject.toml; the stamp remembers it.
INSTALLED := $(VENV)/.installed
export VIRTUAL_ENV := $(CURDIR)/$(VENV)
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help
help: ## Show the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(INSTALLED): pyproject.toml Cargo.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "tenantgate needs Python >= 3.11 (found $$($(PYTHON) --version))" >&2; exit 1; }
	@command -v cargo >/dev/null || { echo "tenantgate needs a Rust toolchain (cargo)" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[embedded,hsm,dev]"
	touch $@

.PHONY: venv
venv: $(INSTALLED) ## Create .venv with the package and all development dependencies

# Debian packages CI needs besides PyPI: SoftHSM2 (the HSM tests), PgBouncer (the isolation and
# lifecycle suites through transaction pooling) and wrk (the end-to-end benches). Installed only
# when missing.
SYSTEM_PACKAGES := softhsm2:softhsm2-util pgbouncer:pgbouncer wrk:wrk

.PHONY: system-packages
system-packages: ## Install the Debian packages CI needs (softhsm2, pgbouncer, wrk) with apt-get
	@missing=""; for entry in $(SYSTEM_PACKAGES); do \
		command -v "$${entry#*:}" >/dev/null 2>&1 || PATH="$$PATH:/usr/sbin" command -v "$${entry#*:}" >/dev/null 2>&1 \
			|| missing="$$missing $${entry%%:*}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing from Debian:$$missing"; \
		apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

.PHONY: build
build: $(INSTALLED) ## Build the native extension (release) in place
	$(BIN)/maturin develop --release --skip-install --quiet

.PHONY: run
run: build ## Start `tenantgate dev`: embedded PostgreSQL, Redis and S3, a demo tenant, the service
	$(BIN)/tenantgate dev --data-dir .tenantgate --demo

.PHONY: lint
lint: $(INSTALLED) ## ruff, mypy --strict, cargo fmt and clippy
	$(BIN)/ruff check python tests benches
	$(BIN)/ruff format --check python tests benches
	$(BIN)/mypy
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings

# The suite runs in this many processes (pytest-xdist), each with its own embedded stack; a
# test file stays in one process, so its module fixtures are made once.
TEST_WORKERS ?= 2

.PHONY: test
test: build lint ## cargo test, stub check, and the whole pytest suite against real servers
	cargo test --workspace --quiet
	$(BIN)/python -m mypy.stubtest tenantgate._native
	$(BIN)/pytest --numprocesses $(TEST_WORKERS) --dist loadfile --durations 15

.PHONY: fuzz-api
fuzz-api: build ## schemathesis, all checks, against a fresh `tenantgate dev`: tenant, admin and service APIs
	$(BIN)/python tests/contract/fuzz_api.py

.PHONY: bench
bench: build ## Benchmarks: native vs pure-Python reference; writes bench-results.json
	$(BIN)/pytest benches --benchmark-enable --benchmark-only --benchmark-json=bench-results.json -q
	$(BIN)/python benches/memory.py
	$(BIN)/python benches/redis_connections.py
	$(BIN)/python benches/cluster_leases.py
	$(BIN)/python benches/audit_append.py
	$(BIN)/python benches/hsm.py
	$(BIN)/python benches/revocation_reach.py --rounds 10
	$(BIN)/python benches/report.py
	cargo bench -p tenantgate-core --quiet -- --quick

LOADGEN := target/release/tenantgate-loadgen

.PHONY: loadgen
loadgen:
	cargo build --release --quiet -p tenantgate-loadgen

.PHONY: bench-quick
bench-quick: build ## The micro benchmarks in short rounds, printed as tables (CI)
	$(BIN)/pytest benches --benchmark-enable --benchmark-only --benchmark-json=bench-results.json -q \
		--benchmark-max-time=0.1 --benchmark-min-rounds=3
	$(BIN)/python benches/report.py

.PHONY: bench-e2e
bench-e2e: build loadgen ## End to end vs a single-tenant baseline: wrk + our open-loop generator (needs Debian's wrk)
	$(BIN)/python benches/e2e.py $(E2E_FLAGS)

.PHONY: bench-e2e-quick
bench-e2e-quick: E2E_FLAGS := --quick
bench-e2e-quick: bench-e2e ## The same, short runs, native core only (CI)

.PHONY: bench-tenants
bench-tenants: build ## 10,000 tenants: provisioning, migrate killed and resumed, memory, spread read
	$(BIN)/python benches/many_tenants.py $(BENCH_TENANTS_ARGS)

.PHONY: bench-tenants-quick
bench-tenants-quick: BENCH_TENANTS_ARGS := --quick
bench-tenants-quick: bench-tenants ## The same with 200 tenants (10 with the S3 step), 3 s wrk rounds

.PHONY: clean
clean: ## Remove build products, the virtualenv and the dev data folder
	rm -rf target $(VENV) .tenantgate bench-results.json bench-memory.json bench-tenants.json python/tenantgate/_native*.so
