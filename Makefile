# Set-up and everyday commands. `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed

.PHONY: install run test lint bench clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

run: install
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

# pytest exits 5 when it collects no tests, so an empty run fails here too.
test: lint
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# A few minutes: figures in bench/results/<date>.md and .json (installs wrk if missing).
bench: install
	$(BIN)/python bench/benchmark.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache data logs
