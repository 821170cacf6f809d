"""Convert chapter citations to per-page footnote citations ({footcite} + {footbibliography}).

Chapters list their own references at the end; the appendix bibliography lists everything once.
Per-page {bibliography} blocks would cite the same key twice across the book (Sphinx warnings).
Usage: python scripts/footcite.py book/NN_name.py [...]  (then `jupytext --sync`).
"""

import re
import sys
from pathlib import Path


def convert(text: str) -> str:
    text = re.sub(r"\{cite(:[pt])?\}", lambda m: "{footcite" + (m.group(1) or "") + "}", text)
    for prefix in ("", "# "):
        for block in (f"{prefix}```{{bibliography}}\n{prefix}:filter: docname in docnames\n{prefix}```",):
            text = text.replace(block, f"{prefix}```{{footbibliography}}\n{prefix}```")
    return text


if __name__ == "__main__":
    for name in sys.argv[1:]:
        path = Path(name)
        old = path.read_text()
        new = convert(old)
        path.write_text(new)
        print(f"{name}: {old.count('{cite')} citations converted, footbibliography: {'{footbibliography}' in new}")
