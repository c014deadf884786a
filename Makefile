# chainops — `make run` compiles environments/*.yaml into .chainops/gitops.git,
# `make test` runs the whole suite. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast ui bench clean smoke-bins monitoring-bins

# The client binaries `chainops smoke` runs (the geth-clique profile's pinned release),
# built once from their Go module into a cache outside the repository and reused.
GETH_VERSION := v1.13.15
export CHAINOPS_GETH_DIR ?= $(HOME)/.cache/chainops/geth-$(GETH_VERSION)/bin

# geth-ethash pins geth v1.11.6, which needs a toolchain of its own era (go1.21).
ETHASH_GETH_VERSION := v1.11.6
ETHASH_GETH_DIR := $(HOME)/.cache/chainops/geth-$(ETHASH_GETH_VERSION)/bin

smoke-bins:
	@test -x $(CHAINOPS_GETH_DIR)/geth -a -x $(CHAINOPS_GETH_DIR)/bootnode || \
	  GOBIN=$(CHAINOPS_GETH_DIR) GOTOOLCHAIN=go1.22.12 go install \
	    github.com/ethereum/go-ethereum/cmd/geth@$(GETH_VERSION) github.com/ethereum/go-ethereum/cmd/bootnode@$(GETH_VERSION)
	@test -x $(ETHASH_GETH_DIR)/geth -a -x $(ETHASH_GETH_DIR)/bootnode || \
	  GOBIN=$(ETHASH_GETH_DIR) GOTOOLCHAIN=go1.21.13 go install \
	    github.com/ethereum/go-ethereum/cmd/geth@$(ETHASH_GETH_VERSION) github.com/ethereum/go-ethereum/cmd/bootnode@$(ETHASH_GETH_VERSION)

# promtool, which tests/render/test_monitoring.py runs on the rendered alert rules
# (`promtool check rules`, `promtool test rules`), built once from the Prometheus Go module
# into a cache outside the repository and reused (v0.316.0 needs go >= 1.26.7).
PROMTOOL_VERSION := v0.316.0
export CHAINOPS_PROMTOOL_DIR ?= $(HOME)/.cache/chainops/promtool-$(PROMTOOL_VERSION)/bin

monitoring-bins:
	@test -x $(CHAINOPS_PROMTOOL_DIR)/promtool || \
	  GOBIN=$(CHAINOPS_PROMTOOL_DIR) GOTOOLCHAIN=go1.26.8 go install \
	    github.com/prometheus/prometheus/cmd/promtool@$(PROMTOOL_VERSION)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/chainops compile

# Three workers on two cores: the smoke and `dagster dev` tests mostly wait (on geth, on
# Dagster's daemons), and the third worker overlaps that waiting with CPU-bound tests.
test: $(STAMP) smoke-bins monitoring-bins
	$(BIN)/python -m pytest -n 3 --dist loadgroup -q

# Everything but the tests that boot servers and pods (see SLOW_MODULES in tests/conftest.py).
# Three workers here too: two left the cores ~12% idle (tests waiting on git servers, sops,
# kubectl and retry back-offs); measured 43-49 s against 45-58 s (README, Tests).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 3 -q -m "not slow"

# The Dagster UI, webserver and daemon on 127.0.0.1:3000 with a SQLite instance in
# .chainops/dagster (deploy/dagster.local.yaml: publishing pool of 1, run monitoring).
ui: $(STAMP)
	mkdir -p .chainops/dagster
	install -m 0644 deploy/dagster.local.yaml .chainops/dagster/dagster.yaml
	DAGSTER_HOME=$(CURDIR)/.chainops/dagster $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python benchmarks/compile_bench.py
	$(BIN)/python benchmarks/render_vs_helm.py

clean:
	rm -rf $(VENV) .chainops
