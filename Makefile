# Set-up and everyday commands. `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
# Two stamps: what running needs (the service, the client, the examples, the console commands), and
# the test tools on top of it.
RUN_STAMP = $(VENV)/.installed-run
DEV_STAMP = $(VENV)/.installed-dev
PIP = $(BIN)/pip install --quiet --disable-pip-version-check

.PHONY: install install-dev system-packages run test lint bench screenshots clean

install: $(RUN_STAMP)

install-dev: $(DEV_STAMP)

# gunicorn's C HTTP parser (what gunicorn[fast] adds) builds from source: where it cannot, gunicorn
# falls back to its own Python parser and `make run` goes on.
# `pip install -e .` puts queues-client and queues-users on the venv's PATH, for any folder.
$(RUN_STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
	$(PIP) gunicorn_h1c==0.6.10 || echo "gunicorn_h1c did not build: gunicorn parses HTTP in Python instead"
	$(PIP) --no-deps -e .
	touch $(RUN_STAMP)

$(DEV_STAMP): $(RUN_STAMP) requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	touch $(DEV_STAMP)

# The tests start real redis-server, nginx and chromium processes on loopback and run logrotate;
# install them where missing (Debian packages; needs root, as on CI).
SYSTEM_PACKAGES = redis-server:redis-server nginx:nginx-light openssl:openssl chromium:chromium logrotate:logrotate

system-packages:
	@missing=""; for pair in $(SYSTEM_PACKAGES); do \
		command -v $${pair%%:*} >/dev/null 2>&1 || [ -x /usr/sbin/$${pair%%:*} ] || missing="$$missing $${pair#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

run: install
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

# pytest exits 5 when it collects no tests, so an empty run fails here too.
test: lint system-packages
	$(BIN)/pytest

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# A few minutes: figures in bench/results/<date>.md and .json (installs wrk if missing).
bench: install-dev
	$(BIN)/python bench/benchmark.py

# The README's pictures of the console, retaken by its browser test.
screenshots: install-dev system-packages
	QUEUES_SCREENSHOTS=1 $(BIN)/pytest tests/test_ui.py -k screenshots

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache data logs
