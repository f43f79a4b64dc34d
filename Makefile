# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## Start everything on the embedded default (SQLite, embedded Redis, emulated banks).
run: $(BIN)/.installed
	$(BIN)/python -m lockerhub.run

## Run the whole suite (embedded default unless DATABASE_URL / REDIS_URL are set).
test: $(BIN)/.installed
	LOCKERHUB_EMBEDDED_REDIS_PORT=$${LOCKERHUB_EMBEDDED_REDIS_PORT:-16380} \
	LOCKERHUB_DATA_DIR=$${LOCKERHUB_DATA_DIR:-$(CURDIR)/var/test} \
	$(BIN)/pytest $(PYTEST_ARGS)

## ruff and the migrations check.
lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python manage.py makemigrations --check --dry-run

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
