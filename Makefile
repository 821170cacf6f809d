# Two commands do all the set-up on a fresh machine (see README):
#   make book   create .venv, install, execute the notebooks that need it, build the HTML book
#   make test   create .venv, install, lint, execute every notebook once under nbval, unit tests,
#               strict book build (executes nothing), browser test
#
# How notebooks are executed (once):
#   scripts/run_notebooks.py runs each notebook of _toc.yml under nbval and stores the executed
#   copy in the book's jupyter-cache (_build/.jupyter_cache). A cached copy is reused only while
#   the notebook's code, the package (tlcourse/**) and the installed versions are unchanged
#   (book/_ext/nbcache.py). The book build then reads every notebook from that cache; under
#   `make test` it must execute none (TLCOURSE_REQUIRE_CACHED=1). A plain `jupyter-book build .`
#   uses the same cache and the same rule (book/_ext/tlcourse_book.py).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tlcourse-installed

# The course runs offline: no model hub, no progress bars in logs.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TLCOURSE_QUIET := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install mathjax notebooks book test unit lint check-notebooks book-strict browser budgets constraints clean

install: $(STAMP)

# constraints.txt pins the exact versions the book's numbers were produced with (`make constraints`).
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing tlcourse and its book/test extras into $(VENV) (first time: a few minutes)..."
	@time $(PY) -m pip install -q -c constraints.txt -e ".[book,test]"
	@$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

mathjax: install
	@$(PY) scripts/fetch_mathjax.py

# Execute (under nbval, offline) the notebooks whose cached copy is missing or stale.
notebooks: install
	scripts/offline.sh $(PY) scripts/run_notebooks.py

book: install mathjax notebooks
	$(VENV)/bin/jupyter-book build . --path-output .
	@echo "The book is at $(CURDIR)/_build/html/index.html"

# Unit tests run with networking disabled (scripts/offline.sh): offline by construction.
unit: install
	scripts/offline.sh $(PY) -m pytest tests -q --ignore=tests/browser

lint: install
	$(PY) -m ruff check tlcourse tests scripts book

check-notebooks: install
	$(PY) scripts/check_notebooks.py

# Warnings are errors; every notebook must come from the cache filled by `notebooks`.
book-strict: install mathjax notebooks
	TLCOURSE_REQUIRE_CACHED=1 $(VENV)/bin/jupyter-book build . --path-output . -W --keep-going
	@echo "The book is at $(CURDIR)/_build/html/index.html"

# The built book in headless Chromium (served on localhost, offline): math, images, Colab links,
# exercise toggles, console errors; screenshots in _build/screenshots/.
browser: install
	@scripts/ensure_chromium.sh
	scripts/offline.sh $(PY) -m pytest tests/browser -q -rs

test: install lint check-notebooks notebooks unit book-strict browser
	@echo "make test: all checks passed."

# The benchmark of the notebooks: runs every notebook afresh and fails past its budget
# (150 s each, chapters 4 and 6 240 s, 20 min in all, 3 GB).
budgets: install
	scripts/offline.sh $(PY) scripts/run_notebooks.py --force --check-budgets

# Regenerate constraints.txt from the current environment (after a deliberate upgrade).
constraints: install
	$(PY) scripts/freeze_constraints.py > constraints.txt

clean:
	rm -rf _build
