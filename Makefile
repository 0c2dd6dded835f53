# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test test-unit test-integration lint bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py rundemo

# Two pytest-xdist workers, a module each at a time (three were faster, 13.5 against 19 minutes,
# but timing-sensitive tests of beat and Flower failed under the load): each worker has its own test databases,
# RabbitMQ virtual host and Redis database (tests/settings.py, tests/integration/conftest.py).
TEST_WORKERS ?= 2

test: $(STAMP)
	DJANGO_SETTINGS_MODULE=tests.settings $(PY) -m django makemigrations djtasks --check --dry-run
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope --durations=30

test-unit: $(STAMP)
	$(PY) -m pytest tests/unit

test-integration: $(STAMP)
	$(PY) -m pytest tests/integration

lint: $(STAMP)
	$(VENV)/bin/ruff check djtasks tests bench demo_project
	$(PY) ../shared/tools/layers.py djtasks
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) -m bench

clean:
	rm -rf $(VENV) .tox .pytest_cache .ruff_cache *.egg-info tests/.test-db.sqlite3* demo_project/db.sqlite3*
