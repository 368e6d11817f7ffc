# GraphWiz presence: `make run` serves on :8083, `make test` runs the suite.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8083
WS_LIMITS := --websocket-max-message-size 65536 --websocket-max-frame-size 65536

.PHONY: install migrate run run-daphne runserver test unit lint proto bench clean

$(BIN)/.installed: requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	@touch $@

install: $(BIN)/.installed

migrate: install
	$(BIN)/python manage.py migrate --noinput

# uvicorn measured faster than daphne (README, "Performance") and waits for a
# slow reader's socket, so the service's own bounded outbox absorbs the backlog.
# --ws: uvicorn's websockets-sansio protocol with the frame guard (ping floods,
# endless fragments, oversized handshakes: presence/transport/uvicorn_ws.py).
# daphne gets the same guard from graphwiz/asgi.py (presence/transport/daphne_ws.py).
UVICORN_WS := --ws presence.transport.uvicorn_ws:GuardedWebSocketProtocol --ws-max-size 65536 --ws-per-message-deflate false

run: migrate  ## serve HTTP + WebSocket with uvicorn on $(HOST):$(PORT)
	$(BIN)/uvicorn graphwiz.asgi:application --host $(HOST) --port $(PORT) $(UVICORN_WS)

run-daphne: migrate  ## the same with daphne
	$(BIN)/daphne -b $(HOST) -p $(PORT) $(WS_LIMITS) graphwiz.asgi:application

runserver: migrate  ## Django's development server (daphne under the hood)
	$(BIN)/python manage.py runserver $(HOST):$(PORT)

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

# With TEST_DATABASE_URL (PostgreSQL) set, the database-facing tests run on it too.
test: install lint
	$(BIN)/pytest
	@if [ -n "$$TEST_DATABASE_URL" ]; then \
		echo "== integration tests again on PostgreSQL ($$TEST_DATABASE_URL)"; \
		DATABASE_URL="$$TEST_DATABASE_URL" $(BIN)/pytest tests/integration -q; \
	fi

unit: install
	$(BIN)/pytest tests/unit

bench: install  ## fan-out benchmark against baseline a (a few minutes); bench-results/
	$(BIN)/python -m bench $(BENCH_ARGS)

proto: install
	$(BIN)/python -m grpc_tools.protoc -Iproto/graphwiz --python_out=presence/protocol --pyi_out=presence/protocol proto/graphwiz/core.proto

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
