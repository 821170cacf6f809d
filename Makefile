# Two commands do all the set-up on a fresh machine (see README):
#   make book   create .venv, install, execute every notebook, build the HTML book
#   make test   create .venv, install, unit tests + nbval on every notebook + strict book build
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tlcourse-installed

# The course runs offline: no model hub, no progress bars in logs, no GUI backend.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TLCOURSE_QUIET := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: install mathjax book test unit notebooks check-notebooks book-strict browser clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing tlcourse and its book/test extras into $(VENV) (first time: a few minutes)..."
	@time $(PY) -m pip install -q -e ".[book,test]"
	@$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

mathjax: install
	@$(PY) scripts/fetch_mathjax.py

book: install mathjax
	$(VENV)/bin/jupyter-book build . --path-output .
	@echo "The book is at $(CURDIR)/_build/html/index.html"

# Unit tests and notebooks run with networking disabled (scripts/offline.sh): offline by construction.
unit: install
	scripts/offline.sh $(PY) -m pytest tests -q --ignore=tests/browser

check-notebooks: install
	$(PY) scripts/check_notebooks.py

notebooks: install
	scripts/offline.sh $(PY) scripts/run_notebooks.py

book-strict: install mathjax
	$(VENV)/bin/jupyter-book build . --path-output . -W --keep-going
	@echo "The book is at $(CURDIR)/_build/html/index.html"

# The built book in headless Chromium (served on localhost, offline): math, images, Colab links,
# exercise toggles, console errors; screenshots in _build/screenshots/.
browser: install
	@scripts/ensure_chromium.sh
	scripts/offline.sh $(PY) -m pytest tests/browser -q -rs

test: install check-notebooks unit notebooks book-strict browser
	@echo "make test: all checks passed."

clean:
	rm -rf _build
