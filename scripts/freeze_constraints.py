"""Print pip constraints with the exact versions installed now (``make constraints``).

The book's numbers depend on these versions (torch above all), so ``make install`` and the CI
workflow install with ``-c constraints.txt``. Local version labels (``+cu130``, ``+cpu``) are
dropped: ``torch==2.14.1`` admits both the CUDA build and the CPU build of that release.
"""

from __future__ import annotations

import sys
from importlib import metadata

SKIP = {"tlcourse", "pip", "setuptools", "wheel"}


def main() -> int:
    pins = {}
    for dist in metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name and name not in SKIP:
            pins[name] = dist.version.split("+", 1)[0]
    print("# Exact versions the book was executed with; regenerate with `make constraints`.")
    print(f"# Python {sys.version.split()[0]}")
    for name in sorted(pins):
        print(f"{name}=={pins[name]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
