"""Put MathJax 3 into ``_vendor/mathjax/`` so the built book renders equations offline.

Uses ``npm pack mathjax@3.2.2`` (the npm registry is reachable at install time) and keeps the
``es5`` bundle. Where npm is missing, writes a small shim that loads MathJax from its CDN
instead, so the book still builds (and renders math when online).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "_vendor" / "mathjax"  # not _static/: Jupyter Book loads every .js found there
VERSION = "3.2.2"
CDN = f"https://cdn.jsdelivr.net/npm/mathjax@{VERSION}/es5/tex-chtml.js"


def main() -> int:
    entry = TARGET / "tex-chtml.js"
    marker = TARGET / f".version-{VERSION}"
    if marker.exists() and entry.exists():
        return 0
    shutil.rmtree(TARGET, ignore_errors=True)
    TARGET.mkdir(parents=True)
    npm = shutil.which("npm")
    if npm:
        with tempfile.TemporaryDirectory() as tmp:
            result = subprocess.run([npm, "pack", f"mathjax@{VERSION}", "--silent"], cwd=tmp,
                                    capture_output=True, text=True)
            tarballs = list(Path(tmp).glob("mathjax-*.tgz"))
            if result.returncode == 0 and tarballs:
                with tarfile.open(tarballs[0]) as tar:
                    members = [m for m in tar.getmembers() if m.name.startswith("package/es5/")]
                    tar.extractall(tmp, members=members, filter="data")
                shutil.rmtree(TARGET)
                shutil.copytree(Path(tmp) / "package" / "es5", TARGET)
                marker.touch()
                print(f"fetch_mathjax: MathJax {VERSION} vendored into {TARGET.relative_to(ROOT)} (offline math)")
                return 0
            print(f"fetch_mathjax: npm pack failed ({result.stderr.strip()[:200]}); using the CDN shim",
                  file=sys.stderr)
    else:
        print("fetch_mathjax: npm not found; using the CDN shim (math renders only online)", file=sys.stderr)
    entry.write_text(
        "// MathJax could not be vendored at build time: load it from the CDN.\n"
        "(function(){var s=document.createElement('script');"
        f"s.src='{CDN}';s.async=true;document.head.appendChild(s);}})();\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
