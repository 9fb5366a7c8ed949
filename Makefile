# One entry point for the project's commands. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint unit chaos venv clean demo image

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	@# setuptools warns about every editable install (BuildBackendWarning); nothing to act on
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy --strict connector

## test: lint, type-check, then every test (unit and integration, real broker and registry)
test: lint
	$(BIN)/python -m pytest

## unit: the fast tests only (no broker, registry or emulator processes)
unit: $(STAMP)
	$(BIN)/python -m pytest -m "not integration"

## chaos: the chaos suite at full scale (200,000 records, 10 kills, a 10-minute API outage);
## `make test` runs it at the CI scale. Figures print under "measurements".
chaos: $(STAMP)
	CHAOS_SCALE=full $(BIN)/python -m pytest -m chaos tests/chaos

## demo: the quick start: broker, registry, emulator and worker on the example mappings
## (options: make demo ARGS="--records 5000 --keep-running")
demo: $(STAMP)
	$(BIN)/python scripts/demo $(ARGS)

## image: the container image (docs/container-image.md): docker when an engine answers, else
## buildah; options as ARGS, e.g. make image ARGS="--local-base --ca-bundle proxy-ca.pem"
image:
	$(PYTHON) scripts/build-image $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
