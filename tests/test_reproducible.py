"""A chapter run twice gives identical numbers: every value it glues, run after run.

`make test` executes every notebook once (under nbval) into the book's cache. This test runs the
cheapest chapter once more, with another executor (nbclient), and compares every glued value
with the cached run. Without a fresh cached run (e.g. `pytest` alone) it runs the chapter twice.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
import nbcache  # noqa: E402

DEFAULT = ROOT / "book" / "00_getting_started.ipynb"


def glued_values(nb: nbformat.NotebookNode) -> dict[str, str]:
    values = {}
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            name = out.get("metadata", {}).get("scrapbook", {}).get("name")
            if name:
                values[name] = json.dumps(out["data"], sort_keys=True)  # glue stores a papermill mime type
    return values


def execute(path: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(str(path), as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    return nb


def cheapest_chapter() -> Path:
    """The chapter with the shortest recorded run that glues at least three values."""
    times = ROOT / "_build" / "notebook_times.json"
    if not times.exists():
        return DEFAULT
    current = nbcache.fingerprint()
    runs = sorted(json.loads(times.read_text())["notebooks"], key=lambda r: r.get("seconds") or float("inf"))
    for run in runs:
        path = ROOT / run["notebook"]
        cached = nbcache.cached_executed(path, current) if path.exists() else None
        if cached is not None and len(glued_values(cached)) >= 3:
            return path
    return DEFAULT


def test_a_chapter_glues_the_same_numbers_twice():
    path = cheapest_chapter()
    reference = nbcache.cached_executed(path, nbcache.fingerprint())
    if reference is None:
        reference = execute(path)
    first = glued_values(reference)
    assert len(first) >= 3, f"{path.name} glues too few values to test reproducibility"
    second = glued_values(execute(path))
    assert first == second, f"{path.name}: glued values differ between two runs"
