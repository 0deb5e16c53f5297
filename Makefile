# Hookpost — the two commands you need: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: install run test lint typecheck schema services clean bench bench-quick bench-deps bench-djw browser-deps

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

services:
	./.ci/services

## Debian's Chromium for the admin's browser tests (tests/browser). Playwright,
## from requirements-dev.txt, drives it and never downloads a browser itself.
CHROMIUM ?= /usr/bin/chromium
browser-deps: install
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  echo "$(CHROMIUM) missing: installing Debian's chromium package"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium || exit 1; \
	fi

## Run the whole suite against the real PostgreSQL and Redis of this machine, in
## PYTEST_WORKERS processes (pytest-xdist): the tests that start processes run one
## after another in one of them (tests/conftest.py), the others share the rest.
PYTEST_WORKERS ?= 2
test: install services browser-deps bench-deps bench-djw
	@# pytest exits 5 when it collected nothing; make fails on it like any error.
	$(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadgroup $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

## mypy --strict with django-stubs and djangorestframework-stubs ([tool.mypy] in pyproject.toml).
typecheck: install
	$(BIN)/mypy

schema: install
	DEBUG=true $(BIN)/python manage.py spectacular --validate --file /dev/null

## Web + worker + scheduler + demo receiver in one foreground command (Ctrl-C
## stops all); sends a demo event and shows it delivered and verified.
## SQLite and an embedded Redis unless DATABASE_URL / REDIS_URL are set.
HOOKPOST_PORT ?= 8000
RECEIVER_PORT ?= 9000
EMBEDDED_REDIS_PORT ?= 6390
run: install
	@mkdir -p var
	@# Endpoint secrets are encrypted at rest here too, with a key made once and
	@# kept in var/ (it must stay with db.sqlite3: the secrets need it). Its processes
	@# get their settings from this recipe (honcho reads no .env); the .env it writes
	@# is for commands run by hand.
	@if [ -z "$$HOOKPOST_ENCRYPTION_KEY" ] && [ ! -s var/encryption-key ]; then \
	  (umask 077; $(BIN)/python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())' \
	    > var/encryption-key) && echo "generated the encryption key for endpoint secrets: var/encryption-key"; \
	fi
	@if [ -z "$$REDIS_URL" ]; then \
	  echo "REDIS_URL unset: starting the embedded Redis on 127.0.0.1:$(EMBEDDED_REDIS_PORT)"; \
	  $(BIN)/python -m config.embedded_redis $(EMBEDDED_REDIS_PORT) > var/redis.log 2>&1 & echo $$! > var/redis.pid; \
	  sleep 1; \
	fi; \
	key_file=; [ -n "$$HOOKPOST_ENCRYPTION_KEY" ] || key_file="$(CURDIR)/var/encryption-key"; \
	export DEBUG=true REDIS_URL=$${REDIS_URL:-redis://127.0.0.1:$(EMBEDDED_REDIS_PORT)/0} PATH=$(CURDIR)/$(BIN):$$PATH \
	  HOOKPOST_ENCRYPTION_KEY=$${HOOKPOST_ENCRYPTION_KEY:-$$(cat var/encryption-key)} \
	  HOOKPOST_PORT=$(HOOKPOST_PORT) RECEIVER_PORT=$(RECEIVER_PORT) \
	  HOOKPOST_ALLOWED_TARGET_NETWORKS=$${HOOKPOST_ALLOWED_TARGET_NETWORKS:-127.0.0.1/32}; \
	if [ -e .env ] && ! head -1 .env | grep -q '^# Written by make run'; then \
	  echo "keeping your .env: commands run by hand (manage.py) read it, not make run's settings"; \
	else (umask 077; { \
	  printf '%s\n' "# Written by make run: the settings its processes run with, for commands run by hand" \
	    "# (.venv/bin/python manage.py ...; servers and workers never read it). The environment wins." \
	    "DEBUG=true" "REDIS_URL='$$REDIS_URL'" "HOOKPOST_ALLOWED_TARGET_NETWORKS='$$HOOKPOST_ALLOWED_TARGET_NETWORKS'"; \
	  if [ -n "$$DATABASE_URL" ]; then printf "DATABASE_URL='%s'\n" "$$DATABASE_URL"; fi; \
	  if [ -n "$$key_file" ]; then printf "HOOKPOST_ENCRYPTION_KEY_FILE='%s'\n" "$$key_file"; \
	  else printf '%s\n' "# HOOKPOST_ENCRYPTION_KEY came from your environment: keep it there for commands too."; fi; \
	} > .env); fi; \
	python manage.py migrate --no-input && \
	python manage.py seed_demo --base-url http://127.0.0.1:$(HOOKPOST_PORT) \
	  --receiver-url http://127.0.0.1:$(RECEIVER_PORT)/webhooks \
	  --key-file var/demo-api-key --admin-file var/demo-admin && \
	honcho start -f Procfile -e /dev/null; \
	status=$$?; [ -f var/redis.pid ] && kill $$(cat var/redis.pid) 2>/dev/null; rm -f var/redis.pid; exit $$status

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache
	@# the .env make run wrote, never one of yours
	@if head -1 .env 2>/dev/null | grep -q '^# Written by make run'; then rm -f .env; fi

## Benchmarks (docs/BENCHMARKS.md): its own database hookpost_bench and Redis DB 12.
## bench-deps installs nginx (the cheap receiver) and its echo module (receivers that
## wait D ms: echo_sleep) from Debian, non-interactively.
BENCH_ARGS ?=
NGINX_ECHO_MODULE ?= /usr/lib/nginx/modules/ngx_http_echo_module.so
bench-deps:
	@{ command -v nginx >/dev/null || test -x /usr/sbin/nginx; } && test -f $(NGINX_ECHO_MODULE) || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends \
	    nginx-light libnginx-mod-http-echo; }

## bench-djw builds the django-webhook baseline's virtualenv from PyPI, here and never
## inside the benchmark or a test (they run without the baseline when it is missing).
DJW_VENV ?= var/bench/djw-venv
DJW_REQUIREMENTS := bench/djw_project/requirements.txt
bench-djw: $(DJW_VENV)/.installed

$(DJW_VENV)/.installed: $(DJW_REQUIREMENTS)
	$(PYTHON) -m venv --clear $(DJW_VENV)
	$(DJW_VENV)/bin/pip install --quiet -r $(DJW_REQUIREMENTS)
	cp $(DJW_REQUIREMENTS) $@

bench: install services bench-deps bench-djw
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-quick: install services bench-deps bench-djw
	$(BIN)/python -m bench --quick $(BENCH_ARGS)
