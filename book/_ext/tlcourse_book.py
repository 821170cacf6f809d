"""Sphinx extension: the book builds the same way from ``make book`` and a plain ``jupyter-book build .``.

On ``config-inited`` (before any notebook is read or executed):

* the environment every notebook runs in: offline model hub, no progress bars (their stderr
  would become build warnings);
* MathJax from ``_vendor/mathjax`` (fetched by ``scripts/fetch_mathjax.py`` when missing; when
  it cannot be fetched, MathJax's CDN instead of a missing path);
* the notebook cache made trustworthy: entries executed with other package sources or
  dependency versions are removed, so they are executed again (``nbcache.py``).

Sphinx re-reads a page only when its source file changed; a notebook whose *outputs* changed
(executed again because the package changed) is re-read too (``env-get-outdated``), so the
HTML never shows outputs older than the cache. On ``build-finished`` it stamps what the build
executed itself and says how many notebooks it executed. With ``TLCOURSE_REQUIRE_CACHED=1`` (``make test``) a notebook missing from the cache
is an error: nbval's run is the only execution.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import nbcache  # noqa: E402

ROOT = nbcache.ROOT
MATHJAX_CDN = "https://cdn.jsdelivr.net/npm/mathjax@3.2.2/es5/tex-chtml.js"


def _log() -> Any:
    from sphinx.util import logging

    return logging.getLogger("tlcourse_book")


def set_environment(app: Any, config: Any) -> None:
    for key, value in nbcache.ENVIRONMENT.items():
        os.environ.setdefault(key, value)


def vendor_mathjax(app: Any, config: Any) -> None:
    entry = ROOT / "_vendor" / "mathjax" / "tex-chtml.js"
    if not entry.exists():
        subprocess.run([sys.executable, str(ROOT / "scripts" / "fetch_mathjax.py")], cwd=ROOT, check=False)
    if not entry.exists():  # never a missing static path: fall back to the CDN
        config.html_static_path = [p for p in config.html_static_path if p != "_vendor"]
        config.mathjax_path = MATHJAX_CDN
        _log().info("tlcourse_book: MathJax could not be vendored; the book loads it from its CDN")


def _cache_dir(app: Any) -> Path:
    path = app.config["nb_execution_cache_path"] or ".jupyter_cache"
    return (Path(app.confdir) / path).resolve() if not Path(path).is_absolute() else Path(path)


def _mode(app: Any) -> str:
    return str(app.config["nb_execution_mode"])


def refresh_cache(app: Any) -> None:
    if _mode(app) != "cache":
        return
    cache_dir = _cache_dir(app)
    current = nbcache.fingerprint()
    app.env.tlcourse_fingerprint = current  # type: ignore[attr-defined]
    if not hasattr(app.env, "tlcourse_outputs"):
        app.env.tlcourse_outputs = {}  # type: ignore[attr-defined]
    removed = nbcache.remove_stale(current, cache_dir)
    if removed:
        _log().info(f"tlcourse_book: {len(removed)} cached notebook(s) predate the current package or "
                    "dependencies and will be executed again")
    if os.environ.get("TLCOURSE_REQUIRE_CACHED") == "1":
        from toc import toc_notebooks

        missing = [p.relative_to(ROOT) for p in toc_notebooks() if nbcache.lookup(p, current, cache_dir) is None]
        if missing:
            raise RuntimeError(f"TLCOURSE_REQUIRE_CACHED=1 but these notebooks are not in the cache (run "
                               f"scripts/run_notebooks.py first): {', '.join(map(str, missing))}")


def _outputs_key(app: Any, path: Path) -> str | None:
    """Identity of the cached outputs a notebook page was (or would be) built from."""
    current = getattr(app.env, "tlcourse_fingerprint", None) or nbcache.fingerprint()
    stamp = nbcache.lookup(path, current, _cache_dir(app))
    return None if stamp is None else json.dumps(stamp, sort_keys=True)


def remember_outputs(app: Any, doctree: Any) -> None:
    """After a notebook page is read: record which cached outputs it shows."""
    if _mode(app) != "cache":
        return
    path = Path(app.env.doc2path(app.env.docname))
    if path.suffix == ".ipynb":
        executed = nbcache.stamp_unstamped(getattr(app.env, "tlcourse_fingerprint", None) or nbcache.fingerprint(),
                                           _cache_dir(app))
        app.tlcourse_executed = getattr(app, "tlcourse_executed", []) + executed
        app.env.tlcourse_outputs[app.env.docname] = _outputs_key(app, path)


def outdated_outputs(app: Any, env: Any, added: set, changed: set, removed: set) -> list[str]:
    """Notebook pages whose cached outputs changed since they were read (their source did not)."""
    if _mode(app) != "cache":
        return []
    stale = []
    for docname in list(env.all_docs):
        if docname in added or docname in changed or docname in removed:
            continue
        path = Path(env.doc2path(docname))
        seen = env.tlcourse_outputs.get(docname)  # None: read before this extension recorded it
        if path.suffix == ".ipynb" and path.exists() and (seen is None or _outputs_key(app, path) != seen):
            stale.append(docname)
    return stale


def forget_outputs(app: Any, env: Any, docname: str) -> None:
    env.tlcourse_outputs.pop(docname, None)


def report_executions(app: Any, exception: Exception | None) -> None:
    if _mode(app) != "cache" or exception is not None:
        return
    current = getattr(app.env, "tlcourse_fingerprint", None) or nbcache.fingerprint()
    executed = getattr(app, "tlcourse_executed", []) + nbcache.stamp_unstamped(current, _cache_dir(app))
    _log().info(f"tlcourse_book: the book build executed {len(executed)} notebook(s)"
                + (f": {', '.join(Path(u).name for u in executed)}" if executed else ""))


def setup(app: Any) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "scripts"))
    app.connect("config-inited", set_environment)
    app.connect("config-inited", vendor_mathjax)
    app.connect("builder-inited", refresh_cache)
    app.connect("env-get-outdated", outdated_outputs)
    app.connect("doctree-read", remember_outputs)
    app.connect("env-purge-doc", forget_outputs)
    app.connect("build-finished", report_executions)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
