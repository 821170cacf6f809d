"""Helpers for the book's pages: the "last executed" badge recorded by the run itself.

The last cell of each chapter calls :func:`last_executed` to show when and where the page's
results were produced: date, device, package versions and the notebook's run time (measured
from the start of the kernel process on Linux, else from the first import of this module).
"""

from __future__ import annotations

import datetime as _dt
import platform
import time
from typing import Any

import torch

import tlcourse

__all__ = ["run_info", "last_executed"]

def _process_age() -> float | None:
    """Seconds since this process started (Linux /proc), or None elsewhere."""
    try:
        import os

        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


_IMPORTED = time.perf_counter()


def _elapsed() -> float:
    age = _process_age()
    return age if age is not None else time.perf_counter() - _IMPORTED


def run_info() -> dict[str, Any]:
    """Date, device, versions and seconds since the (kernel) process started."""
    # read the installed version without importing transformers (slow, and it pulls in tqdm.auto)
    from importlib.metadata import PackageNotFoundError, version

    try:
        tf_version = version("transformers")
    except PackageNotFoundError:  # pragma: no cover - transformers is a dependency
        tf_version = "n/a"
    if torch.cuda.is_available():
        device = torch.cuda.get_device_name(0)
    else:
        device = f"CPU ({platform.machine()}, {torch.get_num_threads()} threads)"
    return {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "seconds": round(_elapsed(), 1),
        "device": device,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": tf_version,
        "tlcourse": tlcourse.__version__,
    }


def last_executed() -> Any:
    """An HTML badge with :func:`run_info` (falls back to text outside Jupyter)."""
    info = run_info()
    text = (f"Last executed {info['date']} in {info['seconds']:.0f} s on {info['device']} · "
            f"Python {info['python']} · torch {info['torch']} · transformers {info['transformers']} · "
            f"tlcourse {info['tlcourse']}")
    try:
        from IPython.display import HTML
    except ImportError:  # pragma: no cover
        return text
    return HTML(
        '<div class="tlcourse-run-badge" style="font-size:0.85em;padding:0.4em 0.8em;border-left:4px solid #2a7ae2;'
        f'background:rgba(42,122,226,0.08);margin:1em 0">&#9201; {text}</div>'
    )
