"""Check the notebooks: no stored outputs, in sync with their jupytext twins, all in the TOC.

Also: the first code cell installs tlcourse in Colab only, from the configured repository, pinned
to the package's version (``tlcourse.__version__``); every chapter ends with the "Last executed"
badge (``tlcourse.book.last_executed()``).

Run by ``make test`` (and usable alone: ``python scripts/check_notebooks.py``). Exits 1 with
one line per problem.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import jupytext
import nbformat
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from toc import ROOT, toc_pages  # noqa: E402

INSTALL_MARK = '"google.colab" in sys.modules'
BADGE_MARK = "last_executed()"


def package_version(root: Path = ROOT) -> str:
    """``__version__`` from ``tlcourse/__init__.py``, read without importing the package."""
    match = re.search(r'^__version__ = "([^"]+)"', (root / "tlcourse" / "__init__.py").read_text(), re.M)
    if match is None:
        raise RuntimeError("tlcourse/__init__.py has no __version__ line")
    return match.group(1)


def repository_url() -> str:
    return yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


def check(root: Path = ROOT) -> list[str]:
    problems: list[str] = []
    pages = toc_pages(root)
    notebooks = sorted(p for p in (root / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    repo = repository_url().removeprefix("https://")
    pin = f"@v{package_version(root)}"
    for nb_path in notebooks:
        rel = nb_path.relative_to(root)
        if nb_path not in pages:
            problems.append(f"{rel}: not listed in _toc.yml")
        nb = nbformat.read(nb_path, as_version=4)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type == "code" and (cell.get("outputs") or cell.get("execution_count") is not None):
                problems.append(f"{rel}: cell {i} stores outputs or an execution count "
                                "(commit notebooks without outputs)")
        twin = nb_path.with_suffix(".py")
        if not twin.exists():
            problems.append(f"{rel}: missing jupytext twin {twin.relative_to(root)}")
        else:
            expected = jupytext.writes(nb, fmt="py:percent")
            if expected.strip() != twin.read_text().strip():
                problems.append(f"{rel}: out of sync with {twin.name} (run `jupytext --sync {rel}`)")
        code = [c.source for c in nb.cells if c.cell_type == "code"]
        if not code or INSTALL_MARK not in code[0] or repo not in code[0]:
            problems.append(f"{rel}: the first code cell must install tlcourse from {repo} inside Colab only")
        elif pin not in code[0]:
            problems.append(f"{rel}: the Colab install cell must pin tlcourse to this version ({pin})")
        if not any(BADGE_MARK in c for c in code[-2:]):
            problems.append(f"{rel}: the last cells must show the 'Last executed' badge "
                            "(tlcourse.book.last_executed())")
    readme = root / "README.md"
    if readme.exists():  # badges and launch links must point at the configured repository
        owner_name = repo.removeprefix("github.com/")
        links = re.findall(r"github(?:\.com)?/([\w.-]+/[\w.-]+)/(?:blob|actions)", readme.read_text())
        for found in sorted(set(links)):
            if found != owner_name:
                problems.append(f"README.md: link to {found}, but _config.yml's repository is {owner_name}")
    return problems


def main() -> int:
    problems = check()
    for line in problems:
        print(f"check_notebooks: {line}")
    n = len([p for p in (ROOT / "book").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts])
    print(f"check_notebooks: {n} notebooks checked, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
