"""Read ``_toc.yml``: the list of pages (and notebooks) of the book, in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _walk(node: Any) -> list[str]:
    files: list[str] = []
    if isinstance(node, dict):
        if "file" in node:
            files.append(node["file"])
        if "root" in node:
            files.append(node["root"])
        for key in ("parts", "chapters", "sections"):
            for child in node.get(key, []) or []:
                files.extend(_walk(child))
    return files


def toc_pages(root: Path = ROOT) -> list[Path]:
    """Every page of the table of contents, resolved to its file (.md or .ipynb)."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    pages = []
    for stem in _walk(toc):
        for ext in (".ipynb", ".md"):
            path = root / f"{stem}{ext}"
            if path.exists():
                pages.append(path)
                break
        else:
            raise FileNotFoundError(f"_toc.yml lists {stem!r} but neither {stem}.ipynb nor {stem}.md exists")
    return pages


def toc_notebooks(root: Path = ROOT) -> list[Path]:
    return [p for p in toc_pages(root) if p.suffix == ".ipynb"]


if __name__ == "__main__":
    for page in toc_notebooks():
        print(page.relative_to(ROOT))
