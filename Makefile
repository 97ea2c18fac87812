# Pathways: `make run` starts the whole system; `make test` runs the whole suite.
# Both create or update .venv themselves: nothing needs installing by hand beyond Python 3.11+.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' && { echo $$p; break; }; done)
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test install bench clean openapi

$(STAMP): pyproject.toml
	@test -n "$(PYTHON)" || { echo "Pathways needs Python 3.11 or newer on PATH" >&2; exit 1; }
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(VENV)/bin/pathways up

test: $(STAMP)
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# Regenerate the checked-in OpenAPI documents (docs/openapi/) after changing an API.
openapi: $(STAMP)
	$(VENV)/bin/python -m services.openapi_docs

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .data .pytest_cache
