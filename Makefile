# Set-up and everyday commands. `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
STAMP = $(VENV)/.installed

.PHONY: install system-packages run test lint bench clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

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

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# A few minutes: figures in bench/results/<date>.md and .json (installs wrk if missing).
bench: install
	$(BIN)/python bench/benchmark.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache data logs
