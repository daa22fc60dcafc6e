# Two commands do all the set-up on a fresh Debian/Ubuntu machine with Python 3.11:
#   make demo   installs everything, then runs the main job on the built-in default
#   make test   installs everything, then runs the whole test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO_ARGS ?=
FUZZ_SECONDS ?= 60
STAMP := $(VENV)/.umt-installed

.PHONY: setup system-deps demo test test-slow lint bench fuzz gpu-check clean

setup: $(STAMP) system-deps

# torch first, pinned, so nothing else can make pip resolve a newer (CUDA) build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[all,dev]'
	touch $(STAMP)

# Debian packages: FluidSynth synthesises audio from MIDI; libcairo2 is what cairosvg renders with;
# Chromium runs the web app's browser tests (headless, driven by Playwright; never a browser download).
# Installed only when we are root and one is missing.
DEBIAN_PACKAGES := fluidsynth libcairo2 chromium
system-deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "warning: could not install $$missing; audio synthesis or rendering tests will be skipped"; \
	  else echo "note: missing Debian packages: $$missing (install them as root)"; fi; \
	fi

# DEMO_ARGS: extra arguments, e.g. make demo DEMO_ARGS=--quick
demo: setup
	$(VENV)/bin/umt demo $(DEMO_ARGS)

test: setup
	$(PY) -m pytest -q -n 2 --timeout 900 -m "not slow"

# The slow loops left out of `make test` (kills at random moments over many seeds).
test-slow: setup
	$(PY) -m pytest -q -n 2 --timeout 900 -m slow

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	$(PY) -m umt.bench all

# Mutation fuzzing of every file reader for FUZZ_SECONDS (tests/hostile/fuzz.py); failing inputs are
# kept in fuzz-failures/.
fuzz: setup
	$(PY) -m tests.hostile.fuzz --seconds $(FUZZ_SECONDS)

# On a machine with a CUDA device: the GPU-only tests (FSDP, bf16, CUDA RNG, GPU baking and
# translation), then the translator benchmark in bf16 with MFU. About ten minutes on one H100/H200.
gpu-check: setup
	$(PY) -m pytest -q -m gpu -rs tests
	$(PY) -m umt.bench translator --device cuda --sizes tiny --repeats 3
	$(PY) -m umt.bench translator --device cuda --sizes paper --repeats 3 \
	  --batch 16 --source-len 1024 --target-len 512 --train-steps 3 --decode-steps 64

clean:
	rm -rf $(VENV) .pytest_cache
