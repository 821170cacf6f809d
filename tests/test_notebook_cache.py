"""The book's notebook cache: a notebook runs again exactly when something it depends on changed."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import nbcache  # noqa: E402
import run_notebooks  # noqa: E402


def _project(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny project: a package with one function and a notebook that glues its result."""
    root = tmp_path / "project"
    (root / "tlcourse").mkdir(parents=True)
    (root / "tlcourse" / "__init__.py").write_text("def answer():\n    return 41 + 1\n")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A page"),
        nbformat.v4.new_code_cell("import sys\nsys.path.insert(0, '.')\nimport tlcourse\nprint(tlcourse.answer())"),
    ]
    path = root / "page.ipynb"
    nbformat.write(nb, str(path))
    return root, path


def test_fingerprint_follows_package_sources_and_versions(tmp_path, monkeypatch):
    root, _ = _project(tmp_path)
    first = nbcache.fingerprint(root)
    assert nbcache.fingerprint(root) == first  # nothing changed
    init = root / "tlcourse" / "__init__.py"
    init.write_text(init.read_text().replace("41 + 1", "40 + 2"))  # a function body
    changed = nbcache.fingerprint(root)
    assert changed != first
    (root / "tlcourse" / "__pycache__").mkdir()
    (root / "tlcourse" / "__pycache__" / "x.pyc").write_bytes(b"compiled")  # not a source
    assert nbcache.fingerprint(root) == changed
    monkeypatch.setattr(nbcache, "installed_versions", lambda: ["torch==0.0.1"])
    assert nbcache.fingerprint(root) != changed


def test_notebook_runs_again_only_when_the_package_changes(tmp_path):
    root, page = _project(tmp_path)
    cache_dir = tmp_path / "cache"

    first = run_notebooks.run_all([page], root=root, cache_dir=cache_dir)
    assert [r["cached"] for r in first] == [False] and first[0]["passed"]
    executed = nbcache.cached_executed(page, nbcache.fingerprint(root), cache_dir)
    assert executed.cells[1].outputs[0]["text"] == "42\n"  # nbval's outputs, stored for the book

    again = run_notebooks.run_all([page], root=root, cache_dir=cache_dir)
    assert [r["cached"] for r in again] == [True]  # nothing changed: nothing executes

    init = root / "tlcourse" / "__init__.py"
    init.write_text(init.read_text().replace("41 + 1", "42 + 1"))
    assert nbcache.cached_executed(page, nbcache.fingerprint(root), cache_dir) is None  # stale, not served
    third = run_notebooks.run_all([page], root=root, cache_dir=cache_dir)
    assert [r["cached"] for r in third] == [False]
    executed = nbcache.cached_executed(page, nbcache.fingerprint(root), cache_dir)
    assert executed.cells[1].outputs[0]["text"] == "43\n"
    assert len(nbcache.get_cache(cache_dir).list_cache_records()) == 1  # the stale copy was removed


def test_a_failing_notebook_is_never_cached(tmp_path):
    root, page = _project(tmp_path)
    nb = nbformat.read(str(page), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("assert tlcourse.answer() == 0, 'claim does not hold'"))
    nbformat.write(nb, str(page))
    cache_dir = tmp_path / "cache"
    results = run_notebooks.run_all([page], root=root, cache_dir=cache_dir)
    assert not results[0]["passed"]
    assert nbcache.get_cache(cache_dir).list_cache_records() == []


@pytest.mark.parametrize("seconds, budget_ok", [(10.0, True), (200.0, False)])
def test_budgets_are_checked_only_on_request(seconds, budget_ok):
    record = {"notebook": "book/x.ipynb", "seconds": seconds, "peak_mb": 500, "budget_s": 150.0}
    problems = run_notebooks.check_budgets([record])
    assert (problems == []) is budget_ok
    memory = run_notebooks.check_budgets([{**record, "seconds": 1.0, "peak_mb": 5000}])
    assert memory and "MB" in memory[0]
