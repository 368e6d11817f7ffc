# GraphWiz presence: `make run` serves on :8083, `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8083
WS_LIMITS := --websocket-max-message-size 65536 --websocket-max-frame-size 65536

.PHONY: install install-runtime chromium js migrate run run-daphne runserver test unit lint proto bench clean

# Two sets: requirements.txt is what runs (`make run`, the Docker image);
# requirements-dev.txt adds the test, benchmark and lint tools.
$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(BIN)/.installed-runtime: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@touch $@

$(BIN)/.installed-dev: requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	@touch $@ $(BIN)/.installed-runtime

install-runtime: $(BIN)/.installed-runtime  ## only what `make run` needs

install: $(BIN)/.installed-dev  ## the development set: runtime + tests, bench, lint

migrate: install-runtime
	$(BIN)/python manage.py migrate --noinput

# uvicorn measured faster than daphne (README, "Performance") and waits for a
# slow reader's socket, so the service's own bounded outbox absorbs the backlog.
# --no-proxy-headers: uvicorn would otherwise believe X-Forwarded-For from
# 127.0.0.1; only TRUSTED_PROXIES decides (presence/transport/ratelimits.py).
# --ws: uvicorn's websockets-sansio protocol with the frame guard (ping floods,
# endless fragments, oversized handshakes: presence/transport/uvicorn_ws.py).
# daphne gets the same guard from graphwiz/asgi.py (presence/transport/daphne_ws.py).
# --loop uvloop: the event loop in C (measured faster per frame and per connect:
# README, "Performance"); pinned in requirements.txt.
# --http: uvicorn's h11 protocol with a 10 s deadline for a request head, so a
# silent or half-sent request cannot hold a socket (presence/transport/uvicorn_http.py;
# daphne: presence/transport/daphne_http.py, also installed from graphwiz/asgi.py).
UVICORN_WS := --http presence.transport.uvicorn_http:GuardedH11Protocol --ws presence.transport.uvicorn_ws:GuardedWebSocketProtocol --ws-max-size 65536 --ws-per-message-deflate false --no-proxy-headers --loop uvloop

run: migrate  ## serve HTTP + WebSocket with uvicorn on $(HOST):$(PORT)
	$(BIN)/uvicorn graphwiz.asgi:application --host $(HOST) --port $(PORT) $(UVICORN_WS)

# daphne through graphwiz/daphne_cli.py: the same options, credentials redacted
# from its access log (uvicorn's and runserver's go through logging: presence/redact.py).
run-daphne: migrate  ## the same with daphne
	$(BIN)/python -m graphwiz.daphne_cli -b $(HOST) -p $(PORT) $(WS_LIMITS) graphwiz.asgi:application

runserver: migrate  ## Django's development server (daphne under the hood)
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

# The browser tests drive Debian's /usr/bin/chromium; as root this installs it
# (apt-get), otherwise it says which command to run. .ci/run uses the same script.
chromium:
	@scripts/ensure-chromium

# The JavaScript client's Node tests (tests/js, run by tests/e2e/test_js_client.py)
# use the versions pinned in tests/js/package-lock.json; Node 20+ is required.
js: tests/js/node_modules/.installed

tests/js/node_modules/.installed: tests/js/package.json tests/js/package-lock.json
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 20 ? 0 : 1)' || { echo "Node 20+ is required for the JavaScript client tests: apt-get install nodejs"; exit 1; }
	cd tests/js && npm ci --no-audit --no-fund
	@touch $@

# With TEST_DATABASE_URL (PostgreSQL) set, the database-facing tests run on it too.
test: install chromium js lint
	$(BIN)/pytest
	@if [ -n "$$TEST_DATABASE_URL" ]; then \
		echo "== integration tests again on PostgreSQL ($$TEST_DATABASE_URL)"; \
		DATABASE_URL="$$TEST_DATABASE_URL" $(BIN)/pytest tests/integration -q; \
	fi

unit: install
	$(BIN)/pytest tests/unit

bench: install  ## fan-out benchmark against baseline a (a few minutes); bench-results/
	$(BIN)/python -m bench $(BENCH_ARGS)

# The Python code (protoc) and the JavaScript client's schema (a protobufjs JSON
# descriptor written from the same descriptor: presence/static/presence/schema.js).
proto: install
	$(BIN)/python -m grpc_tools.protoc -Iproto/graphwiz --python_out=presence/protocol --pyi_out=presence/protocol proto/graphwiz/core.proto
	$(BIN)/python scripts/proto_js.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
