# One venv for running and testing; everything installs from the project's own files.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
CONFIG ?= plano_config.yaml

.PHONY: run test install lock schema docs screenshots bench-console bench-overhead bench-routing bench-scale bench-soak bench-key-flood bench-hol clean claude-code agents servers apt

# Every package of `pip install -e '.[dev]'` (runtime + dev extra, and setuptools for the editable build) pinned
# with `==` and sha256 hashes; pip refuses any file whose hash is not in the lock. torch in it is the CPU build
# (requirements/constraints.txt), so nothing pulls the multi-GB CUDA build. The project itself goes in last,
# without dependencies and without build isolation (which would fetch setuptools unchecked).
LOCK := requirements/dev.lock

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --require-hashes -r $(LOCK)
	$(PY) -m pip install --no-deps --no-build-isolation -e .
	touch $@

# Re-resolve the lock after changing dependencies in pyproject.toml. pip-tools runs from its own venv (.venv-lock),
# never the project's. Existing pins are kept where they still fit: `make lock LOCK_ARGS=--upgrade` moves everything
# to the newest releases, `LOCK_ARGS="--upgrade-package NAME"` one package. --all-build-deps and --allow-unsafe put
# the build backend (setuptools) in the lock; the lock names no index or find-links: pip's own configuration says
# where to look, the hashes say what to accept. tests/test_supply_chain.py checks the result (known-bad releases,
# pins, hashes, agreement with pyproject.toml).
LOCK_VENV ?= .venv-lock
PIP_TOOLS ?= pip-tools==7.6.2
LOCK_ARGS ?=
lock:
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet $(PIP_TOOLS)
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --generate-hashes \
		--extra dev --all-build-deps --allow-unsafe --strip-extras --no-emit-find-links --no-emit-index-url \
		-c requirements/constraints.txt -o $(LOCK) $(LOCK_ARGS) pyproject.toml

install: $(VENV)/.installed

run: install
	$(VENV)/bin/junction serve --config $(CONFIG)

test: install agents servers
	$(PY) -m pytest -q

# The config file's JSON Schema, generated from the config models (gateway/config/document.py), and the docs'
# configuration reference generated from it; commit the results. tests/test_config_schema.py fails while either
# committed file differs from what these commands print.
schema: install
	$(PY) -m gateway.cli schema > schema/plano_config.schema.json
	$(PY) -m gateway.config.reference > docs/configuration-reference.md

# The documentation site (MkDocs, Material theme) from docs/ into site/; strict: a broken link, a missing anchor
# or a page left out of the navigation fails the build (tests/test_docs.py builds it the same way).
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet -d site

# Servers the suite starts itself on free loopback ports: Debian's redis-server (the shared key state) and
# PostgreSQL (the usage ledger), and Debian's chromium for the console's browser tests; installed when missing
# and this user may install packages; without them those tests are skipped with the reason.
servers:
	@command -v redis-server >/dev/null 2>&1 || command -v valkey-server >/dev/null 2>&1 || \
		$(MAKE) -s apt PACKAGE=redis-server || \
		echo "redis-server is not installed and cannot be installed here: the shared-state tests will be skipped"
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		$(MAKE) -s apt PACKAGE=postgresql || \
		echo "PostgreSQL is not installed and cannot be installed here: the ledger's PostgreSQL tests will be skipped"
	@command -v chromium >/dev/null 2>&1 || \
		$(MAKE) -s apt PACKAGE=chromium || \
		echo "chromium is not installed and cannot be installed here: the console's browser tests will be skipped"

apt:
	@[ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		{ apt-get install -y -q $(PACKAGE) >/dev/null 2>&1 || \
		  { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q $(PACKAGE) >/dev/null 2>&1; }; }

# First paint and data-on-screen time of every console page in headless Chromium; about 30 s.
bench-console: install servers
	$(PY) benchmarks/console.py $(BENCH_ARGS)

# The console page's screenshots, taken by the browser tests (docs/images/console-*.png).
screenshots: install servers
	JUNCTION_CONSOLE_SHOTS=docs/images $(PY) -m pytest -q tests/test_console.py -k chromium

# Side-by-side overhead benchmark (gateway vs direct vs LiteLLM); a few minutes. LiteLLM runs from its
# own venv (.venv-bench), created on first use. `make bench-overhead BENCH_ARGS=--quick`: about a minute.
bench-overhead: install
	$(PY) benchmarks/overhead.py --setup-litellm $(BENCH_ARGS)

# Routing accuracy and latency on the datasets in ../shared/routing-data (about 7 minutes; --quick about 1).
# The confusion-matrix PNGs need matplotlib (`pip install matplotlib`).
# Throughput of `junction serve --workers 1, 2, 4` with the key limits in Redis (about 2 minutes; --quick about 40 s;
# BENCH_ARGS="--backend memory" for per-worker limits). Needs redis-server (make servers).
bench-scale: install servers
	$(PY) benchmarks/scale.py $(BENCH_ARGS)

bench-routing: install
	$(PY) benchmarks/routing_accuracy.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(LOCK_VENV) .pytest_cache build *.egg-info

# The pinned coding-agent CLIs for the end-to-end tests: Claude Code (tests/test_claude_code.py) and Codex CLI
# (tests/test_codex_cli.py), reinstalled only when tests/e2e/package*.json change; a no-op when node/npm are
# absent, and those tests are then skipped. `claude-code` is the older name of this target.
CLAUDE_CODE_STAMP := tests/e2e/node_modules/.junction-installed
claude-code: agents
agents:
	@if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then \
		echo "agents: node/npm not found, not installing Claude Code and Codex CLI (their tests will skip)"; \
	elif [ -f $(CLAUDE_CODE_STAMP) ] && [ $(CLAUDE_CODE_STAMP) -nt tests/e2e/package.json ] \
			&& { [ ! -f tests/e2e/package-lock.json ] || [ $(CLAUDE_CODE_STAMP) -nt tests/e2e/package-lock.json ]; }; then \
		echo "agents: tests/e2e is up to date"; \
	else \
		if [ -f tests/e2e/package-lock.json ]; then npm ci --prefix tests/e2e --no-audit --no-fund; \
		else npm install --prefix tests/e2e --no-audit --no-fund; fi && touch $(CLAUDE_CODE_STAMP); \
	fi

# Soak test: 10 minutes at 32 concurrent streams with 10% client aborts and 5% upstream errors; RSS slope, open
# FDs and upstream sockets against their targets (about 11 minutes). `make bench-soak BENCH_ARGS=--quick`: 1.5 min.
bench-soak: install
	$(PY) benchmarks/soak.py $(BENCH_ARGS)

# Head-of-line (scenario R24): small streams' time to first token with and without a background load of ~100k-token
# requests, in interleaved windows, and the event-loop lag gauge (about 3 minutes; BENCH_ARGS=--quick about 1).
bench-hol: install
	$(PY) benchmarks/head_of_line.py $(BENCH_ARGS)

# Key flood (security scenario S2): 10,000 wrong gateway keys at c=64 must all get a 401 in the client's protocol,
# with nothing sent upstream; latency, gateway CPU per 1,000 rejections, RSS (about 10 s).
bench-key-flood: install
	$(PY) benchmarks/key_flood.py $(BENCH_ARGS)
