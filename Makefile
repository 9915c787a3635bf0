# One venv for running and testing; everything installs from the project's own files.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CONFIG ?= plano_config.yaml

.PHONY: run test install bench-overhead bench-routing bench-soak clean claude-code

# The router needs PyTorch; a bare `torch` requirement would pull the multi-GB CUDA build, so the
# CPU build is installed first (override e.g. TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu").
TORCH_SPEC ?= torch==2.13.0

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip >/dev/null
	$(PY) -m pip install $(TORCH_SPEC)
	$(PY) -m pip install -e '.[dev]'
	touch $@

install: $(VENV)/.installed

run: install
	$(VENV)/bin/junction serve --config $(CONFIG)

test: install claude-code
	$(PY) -m pytest -q

# Side-by-side overhead benchmark (gateway vs direct vs LiteLLM); a few minutes. LiteLLM runs from its
# own venv (.venv-bench), created on first use. `make bench-overhead BENCH_ARGS=--quick`: about a minute.
bench-overhead: install
	$(PY) benchmarks/overhead.py --setup-litellm $(BENCH_ARGS)

# Routing accuracy and latency on the datasets in ../shared/routing-data (about 7 minutes; --quick about 1).
# The confusion-matrix PNGs need matplotlib (`pip install matplotlib`).
bench-routing: install
	$(PY) benchmarks/routing_accuracy.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info

# The pinned Claude Code CLI for tests/test_claude_code.py (reinstalled only when tests/e2e/package*.json change);
# a no-op when node/npm are absent, and those tests are then skipped.
CLAUDE_CODE_STAMP := tests/e2e/node_modules/.junction-installed
claude-code:
	@if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then \
		echo "claude-code: node/npm not found, not installing the Claude Code CLI (tests/test_claude_code.py will skip)"; \
	elif [ -f $(CLAUDE_CODE_STAMP) ] && [ $(CLAUDE_CODE_STAMP) -nt tests/e2e/package.json ] \
			&& { [ ! -f tests/e2e/package-lock.json ] || [ $(CLAUDE_CODE_STAMP) -nt tests/e2e/package-lock.json ]; }; then \
		echo "claude-code: tests/e2e is up to date"; \
	else \
		if [ -f tests/e2e/package-lock.json ]; then npm ci --prefix tests/e2e --no-audit --no-fund; \
		else npm install --prefix tests/e2e --no-audit --no-fund; fi && touch $(CLAUDE_CODE_STAMP); \
	fi

# Soak test: 10 minutes at 32 concurrent streams with 10% client aborts and 5% upstream errors; RSS slope, open
# FDs and upstream sockets against their targets (about 11 minutes). `make bench-soak BENCH_ARGS=--quick`: 1.5 min.
bench-soak: install
	$(PY) benchmarks/soak.py $(BENCH_ARGS)
