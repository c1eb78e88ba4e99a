# The two set-up commands of the README. Each creates .venv and installs what it needs by itself.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml requirements-extra.txt distillery/serving/stubenv.py | sha1sum | cut -c1-12)

.PHONY: install run test lint clean

$(STAMP): pyproject.toml requirements-extra.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip==26.3"
	$(BIN)/pip install -q -e ".[test]"
	# Packages whose declared dependencies are not needed and would pull native builds (see the file).
	$(BIN)/pip install -q --no-deps -r requirements-extra.txt
	# Triton's bundled python-backend stub needs numpy<2: it runs in a small venv of its own.
	$(BIN)/distillery serve --setup-env
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## run: the main job on its embedded default (no cluster, no GPU, no network)
run: $(STAMP)
	$(BIN)/distillery run $(ARGS)

## test: lint, types, import layering, then the whole test suite
test: $(STAMP)
	$(BIN)/ruff check distillery components pipelines tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check distillery components pipelines tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
