# The two commands: `make demo` and `make test`. Each creates .venv when missing.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export XLA_FLAGS ?=
export HDF5_USE_FILE_LOCKING = FALSE

.PHONY: demo test test-slow bench venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test,plot]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/neuralogcm demo --out demo_output

# Two workers, whole modules each, longest first (tests/conftest.py): the CI machine's 2 cores.
TEST_WORKERS ?= 2

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

test-slow: $(STAMP)
	$(BIN)/python -m pytest -m slow

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) demo_output .pytest_cache
