"""pytest plugin: keep what nbval executed, so the book can reuse it instead of running it again.

nbval runs each code cell of a notebook in a kernel and collects the cell's outputs. With
``-p nbval_capture --nbval-executed-dir DIR`` those outputs are written back into the
notebook, which is saved as ``DIR/<notebook name>`` when every cell passed (never a partly
executed notebook). ``scripts/run_notebooks.py`` then stores it in the book's jupyter-cache.
"""

from __future__ import annotations

import copy
import platform
from pathlib import Path
from typing import Any

import nbformat
import pytest

# What ipykernel reports as language_info (myst-nb picks the code lexer from it).
LANGUAGE_INFO = {
    "name": "python", "version": platform.python_version(), "mimetype": "text/x-python",
    "file_extension": ".py", "pygments_lexer": "ipython3", "codemirror_mode": {"name": "ipython", "version": 3},
    "nbconvert_exporter": "python",
}
_FAILED: set[str] = set()
_FILES: dict[str, Any] = {}


def pytest_addoption(parser: Any) -> None:
    parser.addoption("--nbval-executed-dir", default=None,
                     help="write each fully passing notebook, with the outputs nbval collected, into this folder")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Any:
    outcome = yield
    report = outcome.get_result()
    cell = getattr(item, "cell", None)
    if cell is None or not hasattr(item, "test_outputs"):
        return
    path = str(item.parent.fspath)
    _FILES[path] = item.parent
    if report.failed:
        _FAILED.add(path)
    if call.when == "call" and report.passed:
        cell.outputs = copy.deepcopy(item.test_outputs or [])
        cell.execution_count = item.cell_num + 1
        for out in cell.outputs:
            if out.get("output_type") == "execute_result":
                out["execution_count"] = cell.execution_count


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    target = session.config.getoption("--nbval-executed-dir")
    if not target:
        return
    for path, nb_file in _FILES.items():
        if path in _FAILED or getattr(nb_file, "nb", None) is None:
            continue
        nb_file.nb.metadata.setdefault("language_info", LANGUAGE_INFO)
        out = Path(target) / Path(path).name
        out.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb_file.nb, str(out))
