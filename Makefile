# Two commands on a fresh machine: `make book` and `make test`.
# Each creates .venv/ and installs requirements.txt on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: book test lint exercises system clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# System packages the tests use: headless Chromium (the reader's view of the
# book) and bubblewrap (the grading sandbox). Installed when missing and root.
system:
	bash scripts/install-system-packages.sh

book: $(STAMP)
	$(BIN)/jupyter-book build . -W -n --keep-going

exercises: $(STAMP)
	$(BIN)/python -m bncourse.release

lint: $(STAMP)
	$(BIN)/ruff check bncourse tests scripts benchmarks book solutions

test: $(STAMP) system
	$(BIN)/ruff check bncourse tests scripts benchmarks book solutions
	# One BLAS/torch thread per worker: two workers already fill two cores, and
	# oversubscribed threads made single torch calls 100x slower under load.
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n auto --dist loadfile --nbval-lax tests book

clean:
	rm -rf _build artifacts .pytest_cache
