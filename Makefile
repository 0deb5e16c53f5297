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

## Web + worker + scheduler in one foreground command (Ctrl-C stops all).
## SQLite and an embedded Redis unless DATABASE_URL / REDIS_URL are set.
run: install
	@mkdir -p var
	@if [ -z "$$REDIS_URL" ]; then \
	  echo "REDIS_URL unset: starting the embedded Redis on 127.0.0.1:6390"; \
	  $(BIN)/python -m config.embedded_redis 6390 > var/redis.log 2>&1 & echo $$! > var/redis.pid; \
	  sleep 1; \
	fi; \
	export DEBUG=true REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:6390/0} PATH=$(CURDIR)/$(BIN):$$PATH \
	  HOOKPOST_ALLOWED_TARGET_NETWORKS=$${HOOKPOST_ALLOWED_TARGET_NETWORKS:-127.0.0.1/32}; \
	python manage.py migrate --no-input && \
	python manage.py seed_demo --receiver-url http://127.0.0.1:9000/webhooks && \
	honcho start -f Procfile; \
	status=$$?; [ -f var/redis.pid ] && kill $$(cat var/redis.pid) 2>/dev/null; rm -f var/redis.pid; exit $$status

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache
