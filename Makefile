# The two set-up commands the README promises: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install browser demo up test lint bench lock clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "TicketFlow needs Python 3.11, found " + sys.version.split()[0]'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The browser tests (tests/dashboards/) drive the system's Chromium through Playwright (whose
# own browser download is not used). Installed with apt-get when missing: as root, else sudo.
browser:
	@command -v chromium >/dev/null || { \
	  echo "installing chromium with apt-get (for the browser tests)"; \
	  if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
	  $$sudo apt-get update -qq && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    chromium fonts-liberation; }

demo: install
	$(BIN)/ticketflow up --demo

up: demo

test: install browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/warehouse_http.py
	$(BIN)/python bench/checkout.py
	$(BIN)/python bench/cdc.py
	$(BIN)/python bench/marts.py

# Re-resolve the pinned set after changing pyproject.toml's dependencies.
lock:
	$(BIN)/python -m pip freeze --exclude-editable --disable-pip-version-check > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
