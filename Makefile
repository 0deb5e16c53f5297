# Hookpost — the two commands you need: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install run test lint schema services clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

services:
	./.ci/services

## Run the whole suite against the real PostgreSQL and Redis of this machine.
test: install services
	@# pytest exits 5 when it collected nothing; make fails on it like any error.
	$(BIN)/pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

schema: install
	DEBUG=true $(BIN)/python manage.py spectacular --validate --file /dev/null

## Development server with a demo tenant. SQLite unless DATABASE_URL is set.
run: install
	DEBUG=true $(BIN)/python manage.py migrate --no-input
	DEBUG=true $(BIN)/python manage.py seed_demo
	DEBUG=true $(BIN)/python manage.py runserver 127.0.0.1:8000

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache
