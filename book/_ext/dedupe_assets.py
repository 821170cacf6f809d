"""Sphinx extension: drop repeated ``<script>`` entries from each page.

With Jupyter Book 1.0.4 (Sphinx 7.4) the inline configuration scripts of sphinx-thebe and
sphinx-togglebutton reach the page twice (once with ``filename=None``, once with ``""``, which
Sphinx does not recognise as the same script), and the repeated
``const THEBE_JS_URL = ...`` is a JavaScript error in the reader's browser console
("Identifier 'THEBE_JS_URL' has already been declared"). This keeps the first copy of each.
"""

from __future__ import annotations

from typing import Any


def _key(script: Any) -> tuple:
    attributes = getattr(script, "attributes", {}) or {}
    # an inline script is registered once with filename None and once with "" (same script)
    filename = getattr(script, "filename", script) or ""
    return (str(filename), tuple(sorted((k, str(v)) for k, v in attributes.items())))


def dedupe_scripts(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    scripts = context.get("script_files")
    if not scripts:
        return
    seen: set[tuple] = set()
    unique = []
    for script in scripts:
        key = _key(script)
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
