# One venv for running and testing; everything installs from the project's own files.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CONFIG ?= plano_config.yaml

.PHONY: run test install bench-overhead clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/junction serve --config $(CONFIG)

test: install
	$(PY) -m pytest -q

# Side-by-side overhead benchmark (gateway vs direct vs LiteLLM); several minutes.
bench-overhead: install
	$(PY) benchmarks/overhead.py

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
