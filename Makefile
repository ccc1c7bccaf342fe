# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo lint typecheck unit crds docs clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pilotage demo

lint: $(STAMP)
	$(BIN)/ruff check pilotage tests benchmarks
	$(BIN)/ruff format --check pilotage tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup -p no:cacheprovider

crds: $(STAMP)
	$(BIN)/pilotage crds

docs: $(STAMP)
	$(BIN)/python -m pilotage.api.apidocs --output docs/api.md

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
