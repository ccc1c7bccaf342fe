# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo lint typecheck unit crds docs clean cluster-bin cluster-up cluster-down dashboard-screenshots

# The real control plane the tests run against is built with Go when Go is here.
HAVE_GO := $(shell command -v go 2>/dev/null)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pilotage demo

lint: $(STAMP)
	$(BIN)/ruff check pilotage tests benchmarks testcluster
	$(BIN)/ruff format --check pilotage tests benchmarks testcluster

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck $(if $(HAVE_GO),cluster-bin)
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -p no:cacheprovider

# The dashboard's browser tests (headless Debian chromium) save a screenshot of each page.
dashboard-screenshots: $(STAMP)
	PILOTAGE_SCREENSHOTS=$(CURDIR)/build/dashboard-screenshots $(BIN)/python -m pytest -q -p no:cacheprovider tests/dashboard/test_browser.py tests/dashboard/test_kube.py
	@echo "screenshots in build/dashboard-screenshots/"

crds: $(STAMP)
	$(BIN)/pilotage crds
	$(BIN)/python charts/sync.py

docs: $(STAMP)
	$(BIN)/python -m pilotage.api.apidocs --output docs/api.md

# kube-apiserver, controller-manager, scheduler, kubectl and etcd, built once per version
cluster-bin: $(STAMP)
	$(BIN)/python -m testcluster.build

cluster-up: $(STAMP)
	$(BIN)/python -m testcluster.up

cluster-down: $(STAMP)
	$(BIN)/python -m testcluster.down

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
