# The two commands of the README. Each creates .venv/ (pinned versions from constraints.txt) when it is
# missing or older than the project files, then runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint browser

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

## demo: the main job
demo: $(STAMP)
	$(BIN)/lastmile demo --scenario default

## test: lint, type-check and the default test suite
test: $(STAMP) lint browser
	$(BIN)/pytest -q -n 2

## browser: Debian's headless chromium for the replay page's browser test (only if missing, only as root)
browser:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing chromium (apt-get) for the replay page's browser test"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
	      || echo "could not install chromium: the replay page's browser test will be skipped"; \
	  else \
	    echo "chromium missing (as root: apt-get install chromium): the replay page's browser test will be skipped"; \
	  fi; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
