# pybridge developer tasks.
#
#   make deps    install missing system packages (Debian/Ubuntu, as root)
#   make build   mix compile (cargo builds the NIFs into priv/native)
#   make test    cargo tests of the native core, then mix test
#   make cpython CPython 3.12, 3.14 and 3.14t (free-threaded) built from
#                source, for the sub-interpreter and free-threaded tests
#   make demo    run examples/demo.exs
#   make bench   MIX_ENV=bench mix run bench/run.exs
#   make fmt     format Rust and Elixir sources
#   make lint    rustfmt/clippy/mix format checks, and the workflows
#                (scripts/lint-workflows: YAML, structure, action names)
#
# PYTHON selects the Python to build, test and run against (default: the
# PYBRIDGE_PYTHON environment variable, else python3 on PATH), e.g.
#   make test PYTHON=/usr/bin/python3.11

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

# cargo installed by rustup but not on PATH yet (fresh shells, CI).
export PATH := $(PATH):$(HOME)/.cargo/bin

PYTHON ?= $(or $(PYBRIDGE_PYTHON),python3)
export PYBRIDGE_PYTHON := $(PYTHON)

# The venv the test suite imports numpy from (config/test.exs reads this).
TEST_VENV := $(CURDIR)/_build/test-venv
export PYBRIDGE_TEST_VENV := $(TEST_VENV)
TEST_VENV_PACKAGES ?= numpy

# Extra Debian packages, e.g. DEB_EXTRA=valgrind.
DEB_EXTRA ?=

# CPythons for the tests of sub-interpreter contexts (3.12+: 3.12, whose
# thread states need care, and 3.14) and free-threaded contexts (3.14t; PyO3
# supports no older free-threaded CPython). Debian 12 packages none of them,
# so scripts/build-cpython builds them from the source tarballs in Ubuntu's
# archive (checked against their SHA-256) into a cache outside the tree,
# once per machine.
UBUNTU_POOL := http://archive.ubuntu.com/ubuntu/pool/main/p
CPYTHON_CACHE ?= $(HOME)/.cache/pybridge/cpython
CPY312_URL := $(UBUNTU_POOL)/python3.12/python3.12_3.12.3.orig.tar.xz
CPY312_SHA256 := 56bfef1fdfc1221ce6720e43a661e3eb41785dd914ce99698d8c7896af4bdaa1
CPY314_URL := $(UBUNTU_POOL)/python3.14/python3.14_3.14.4.orig.tar.xz
CPY314_SHA256 := d923c51303e38e249136fc1bdf3568d56ecb03214efdef48516176d3d7faaef8
PY312 := $(CPYTHON_CACHE)/3.12.3/bin/python3.12
PY314 := $(CPYTHON_CACHE)/3.14.4/bin/python3.14
PY314T := $(CPYTHON_CACHE)/3.14.4t/bin/python3.14t
export PYBRIDGE_TEST_PY312 := $(PY312)
export PYBRIDGE_TEST_PY314 := $(PY314)
export PYBRIDGE_TEST_PY314T := $(PY314T)

.PHONY: deps mix-deps build cpython test test-native test-elixir test-venv demo bench fmt lint lint-workflows clean

## deps: system packages. Installs only what is missing; needs root (no sudo).
deps:
	@need=(); \
	if ! command -v mix >/dev/null 2>&1; then \
	  need+=(elixir erlang-dev erlang-nox); \
	fi; \
	if ! command -v "$(PYTHON)" >/dev/null 2>&1 && [ "$(PYTHON)" = python3 ]; then \
	  need+=(python3 python3-venv libpython3-dev); \
	fi; \
	for py in /usr/bin/python3.[0-9]*; do \
	  case "$$py" in *-config) continue;; esac; \
	  [ -x "$$py" ] && command -v dpkg >/dev/null 2>&1 && dpkg -S "$$py" >/dev/null 2>&1 || continue; \
	  ver="$${py#/usr/bin/python}"; \
	  need+=("libpython$$ver" "python$$ver-venv"); \
	done; \
	need+=(curl ca-certificates xz-utils gcc libc6-dev make zlib1g-dev libffi-dev); \
	need+=(python3-yaml); \
	need+=(redis-server redis-tools); \
	need+=($(DEB_EXTRA)); \
	missing=(); \
	for pkg in "$${need[@]}"; do \
	  if ! dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q 'ok installed'; then \
	    missing+=("$$pkg"); \
	  fi; \
	done; \
	if [ $${#missing[@]} -gt 0 ]; then \
	  if ! command -v apt-get >/dev/null 2>&1; then \
	    echo "make deps: missing ($${missing[*]}) and no apt-get here; install them by hand" >&2; \
	    exit 1; \
	  fi; \
	  if [ "$$(id -u)" != 0 ]; then \
	    echo "make deps: missing packages: $${missing[*]}" >&2; \
	    echo "make deps: installing them needs root; run as root:" >&2; \
	    echo "  apt-get update && apt-get install -y $${missing[*]}" >&2; \
	    exit 1; \
	  fi; \
	  echo "==> apt-get install $${missing[*]}"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq; \
	  apt-get install -y -qq --no-install-recommends "$${missing[@]}"; \
	fi; \
	if ! command -v cargo >/dev/null 2>&1; then \
	  echo "make deps: cargo not found: install a Rust toolchain (https://rustup.rs)" >&2; \
	  exit 1; \
	fi; \
	if ! command -v "$(PYTHON)" >/dev/null 2>&1; then \
	  echo "make deps: $(PYTHON) not found: install Python 3.10+ or set PYTHON=/path/to/python3" >&2; \
	  exit 1; \
	fi

## mix-deps: mix.exs declares its Hex packages only when Hex is installed
# (and PYBRIDGE_NO_HEX is unset); fetch them in that case, else there are none.
mix-deps:
	@if [ -z "$${PYBRIDGE_NO_HEX:-}" ] && mix archive 2>/dev/null | grep -q '^\* hex-'; then \
	  mix deps.get; \
	fi

build: mix-deps
	mix compile

## cpython: $(PY312), $(PY314) and $(PY314T) (a few minutes each on two
# cores; skipped when already there).
cpython: $(PY312) $(PY314) $(PY314T)

$(PY312):
	scripts/build-cpython $(CPY312_URL) $(CPY312_SHA256) $(CPYTHON_CACHE)/3.12.3

$(PY314):
	scripts/build-cpython $(CPY314_URL) $(CPY314_SHA256) $(CPYTHON_CACHE)/3.14.4 \
	  --disable-test-modules

$(PY314T):
	scripts/build-cpython $(CPY314_URL) $(CPY314_SHA256) $(CPYTHON_CACHE)/3.14.4t \
	  --disable-test-modules --disable-gil

## test-venv: $(TEST_VENV) made by $(PYTHON), with $(TEST_VENV_PACKAGES).
# Recreated when it was made by another Python. A failed pip install (no
# network) only warns: the tests that need those packages report it.
test-venv:
	@want="$$("$(PYTHON)" -c 'import sys; print(sys.executable, sys.version)')"; \
	if [ ! -x "$(TEST_VENV)/bin/python" ] \
	   || [ "$$(cat "$(TEST_VENV)/.pybridge-python" 2>/dev/null)" != "$$want" ]; then \
	  echo "==> creating $(TEST_VENV) with $(PYTHON)"; \
	  rm -rf "$(TEST_VENV)"; \
	  mkdir -p "$$(dirname "$(TEST_VENV)")"; \
	  "$(PYTHON)" -m venv "$(TEST_VENV)"; \
	  echo "$$want" > "$(TEST_VENV)/.pybridge-python"; \
	fi; \
	for pkg in $(TEST_VENV_PACKAGES); do \
	  if ! "$(TEST_VENV)/bin/python" -c "import $$pkg" >/dev/null 2>&1; then \
	    echo "==> pip install $$pkg into $(TEST_VENV)"; \
	    "$(TEST_VENV)/bin/python" -m pip install --quiet --disable-pip-version-check "$$pkg" \
	      || echo "warning: could not install $$pkg into $(TEST_VENV)" >&2; \
	  fi; \
	done

# The core crate is tested without the `nif` feature, linked against
# $(PYTHON)'s libpython, in its own target dir so it does not fight with the
# release build over features.
test-native:
	@libdir="$$("$(PYTHON)" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')"; \
	cd native && \
	PYO3_PYTHON="$$(command -v "$(PYTHON)")" \
	LD_LIBRARY_PATH="$$libdir$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH}" \
	DYLD_LIBRARY_PATH="$$libdir$${DYLD_LIBRARY_PATH:+:$$DYLD_LIBRARY_PATH}" \
	CARGO_TARGET_DIR="$(CURDIR)/native/target/test" \
	cargo test --workspace --no-default-features

# The free-threaded Python needs a NIF built for its version.
test-elixir: mix-deps test-venv cpython
	mix compile.pybridge --python "$(PY314T)"
	mix test

test: deps test-venv
	$(MAKE) --no-print-directory test-native
	$(MAKE) --no-print-directory test-elixir

demo: deps build
	mix run examples/demo.exs

bench: mix-deps cpython
	MIX_ENV=bench mix compile.pybridge --python "$(PY314T)"
	MIX_ENV=bench mix run bench/run.exs

fmt:
	cd native && cargo fmt --all
	mix format

lint:
	cd native && cargo fmt --all -- --check
	cd native && cargo clippy --workspace --all-targets -- -D warnings
	@libdir="$$("$(PYTHON)" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')"; \
	cd native && \
	PYO3_PYTHON="$$(command -v "$(PYTHON)")" \
	CARGO_TARGET_DIR="$(CURDIR)/native/target/test" \
	cargo clippy --workspace --all-targets --no-default-features -- -D warnings
	mix format --check-formatted
	$(MAKE) --no-print-directory lint-workflows

## lint-workflows: the GitHub workflows parse and use known actions. Needs
# PyYAML: the first of python3 on PATH and the system's /usr/bin/python3
# that has it (make deps installs Debian's python3-yaml).
lint-workflows:
	@py=; \
	for c in python3 /usr/bin/python3; do \
	  if command -v "$$c" >/dev/null 2>&1 && "$$c" -c 'import yaml' 2>/dev/null; then py="$$c"; break; fi; \
	done; \
	if [ -z "$$py" ]; then \
	  echo "make lint-workflows: needs PyYAML: make deps installs python3-yaml (or pip install pyyaml)" >&2; \
	  exit 1; \
	fi; \
	"$$py" scripts/lint-workflows --self-test; \
	"$$py" scripts/lint-workflows .github/workflows/*.yml

clean:
	mix clean
	cd native && cargo clean
	rm -rf "$(TEST_VENV)"
