"""The book's notebook cache: executed once, reused only while nothing it depends on changed.

Notebooks are executed **once** per ``make test`` / ``make book``, under nbval
(``scripts/run_notebooks.py``); the executed copies go into the jupyter-cache that myst-nb reads
(``_build/.jupyter_cache``, ``execute.cache`` in ``_config.yml``), so the book build executes
nothing. jupyter-cache keys an entry on the notebook's code cells only; this module adds the
rest of what an output depends on, the **fingerprint**:

* every file of the package (``tlcourse/**``: code, shipped weights, corpora) and of the
  runner (this module, ``scripts/nbval_capture.py``),
* the versions of every installed distribution (torch, transformers, ... and Python itself).

Each cache entry is stamped with the fingerprint it was executed under (``tlcourse-stamps.json``
beside the cache database). An entry whose stamp differs from the current fingerprint is stale
and removed before anything reads the cache, so it is executed again: a reader never gets
numbers the package no longer produces. Used by ``scripts/run_notebooks.py`` and by the book's
Sphinx extension (``book/_ext/tlcourse_book.py``), so a plain ``jupyter-book build .`` obeys the
same rule.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = ROOT / "_build" / ".jupyter_cache"
STAMPS_NAME = "tlcourse-stamps.json"
#: What the outputs depend on besides the notebook itself.
PACKAGE_DIRS = ("tlcourse",)
#: ... and how the notebooks are executed and captured (the environment below, nbval's capture).
RUNNER_FILES = ("book/_ext/nbcache.py", "scripts/nbval_capture.py")
_SKIP_PARTS = {"__pycache__", ".ipynb_checkpoints"}
#: The environment every notebook runs in, whoever executes it: offline model hub, no progress
#: bars (their stderr would become build warnings).
ENVIRONMENT = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TLCOURSE_QUIET": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
}
_SKIP_SUFFIXES = {".pyc", ".pyo"}


def package_files(root: Path = ROOT) -> list[Path]:
    """Every file under the package directories (sorted; compiled files and caches excluded) and the runner's."""
    files = []
    for name in PACKAGE_DIRS:
        for path in sorted((root / name).rglob("*")):
            if path.is_file() and not (_SKIP_PARTS & set(path.parts)) and path.suffix not in _SKIP_SUFFIXES:
                files.append(path)
    return files + [root / name for name in RUNNER_FILES if (root / name).is_file()]


def installed_versions() -> list[str]:
    """``name==version`` of every installed distribution except tlcourse (its files are hashed)."""
    seen = set()
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name and name != "tlcourse":
            seen.add(f"{name}=={dist.version}")
    return sorted(seen)


def fingerprint(root: Path = ROOT) -> str:
    """Hash of the package sources and the environment: what an executed notebook depends on."""
    digest = hashlib.sha256()
    for path in package_files(root):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(f"python=={platform.python_version()}".encode())
    for line in installed_versions():
        digest.update(line.encode())
        digest.update(b"\n")
    return digest.hexdigest()


def get_cache(cache_dir: Path = CACHE_DIR) -> Any:
    from jupyter_cache import get_cache as _get_cache

    return _get_cache(str(cache_dir))


def read_stamps(cache_dir: Path = CACHE_DIR) -> dict[str, dict[str, Any]]:
    path = Path(cache_dir) / STAMPS_NAME
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return {}


def write_stamps(stamps: dict[str, dict[str, Any]], cache_dir: Path = CACHE_DIR) -> None:
    """Write the stamps atomically (a crash never leaves half a file)."""
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".stamps.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(stamps, f, indent=1, sort_keys=True)
    os.replace(tmp, cache_dir / STAMPS_NAME)


def notebook_hash(path: Path, cache: Any = None) -> str:
    """jupyter-cache's key of a notebook (code cells and kernel spec)."""
    import nbformat

    cache = cache or get_cache()
    _, key = cache.create_hashed_notebook(nbformat.read(str(path), as_version=4))
    return key


def remove_stale(current: str, cache_dir: Path = CACHE_DIR) -> list[str]:
    """Remove every cache entry not stamped with ``current``; returns the removed entries' URIs."""
    cache = get_cache(cache_dir)
    stamps = read_stamps(cache_dir)
    removed = []
    for record in cache.list_cache_records():
        stamp = stamps.get(record.hashkey, {})
        if stamp.get("fingerprint") != current:
            cache.remove_cache(record.pk)
            stamps.pop(record.hashkey, None)
            removed.append(record.uri)
    known = {r.hashkey for r in cache.list_cache_records()}
    write_stamps({k: v for k, v in stamps.items() if k in known}, cache_dir)
    return removed


def lookup(path: Path, current: str, cache_dir: Path = CACHE_DIR) -> dict[str, Any] | None:
    """The stamp of ``path``'s fresh cache entry (executed under ``current``), or ``None``."""
    cache = get_cache(cache_dir)
    key = notebook_hash(path, cache)
    stamp = read_stamps(cache_dir).get(key)
    if stamp is None or stamp.get("fingerprint") != current:
        return None
    try:
        cache.match_cache_notebook(_read(path))
    except KeyError:
        return None
    return stamp


def _read(path: Path) -> Any:
    import nbformat

    return nbformat.read(str(path), as_version=4)


def store(path: Path, executed: Any, current: str, stats: dict[str, Any], cache_dir: Path = CACHE_DIR) -> str:
    """Put an executed notebook into the cache, stamped with ``current`` and ``stats``."""
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(cache_dir)
    record = cache.cache_notebook_bundle(
        CacheBundleIn(executed, str(path), data={"execution_seconds": stats.get("seconds")}),
        check_validity=False,
        overwrite=True,
    )
    stamps = read_stamps(cache_dir)
    stamps[record.hashkey] = {"fingerprint": current, "uri": str(path), **stats}
    write_stamps(stamps, cache_dir)
    return record.hashkey


def stamp_unstamped(current: str, cache_dir: Path = CACHE_DIR) -> list[str]:
    """Stamp entries that the book build itself executed (they ran under ``current``)."""
    cache = get_cache(cache_dir)
    stamps = read_stamps(cache_dir)
    added = []
    for record in cache.list_cache_records():
        if record.hashkey not in stamps:
            seconds = (record.data or {}).get("execution_seconds")
            created = record.created.strftime("%Y-%m-%d %H:%M:%S UTC") if record.created else None
            stamps[record.hashkey] = {"fingerprint": current, "uri": record.uri, "seconds": seconds,
                                      "executed_by": "jupyter-book", "executed_at": created}
            added.append(record.uri)
    if added:
        write_stamps(stamps, cache_dir)
    return added


def cached_executed(path: Path, current: str, cache_dir: Path = CACHE_DIR) -> Any | None:
    """The executed copy of ``path`` from the cache if it is fresh, else ``None``."""
    if lookup(path, current, cache_dir) is None:
        return None
    cache = get_cache(cache_dir)
    _, merged = cache.merge_match_into_notebook(_read(path))
    return merged
