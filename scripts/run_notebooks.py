"""Execute the book's notebooks once, under nbval, and feed the executed copies to the book build.

``python scripts/run_notebooks.py [notebook ...] [--force] [--check-budgets]``

For every notebook of ``_toc.yml`` (or those given):

1. If the book's cache (``_build/.jupyter_cache``) holds a copy executed with the same code
   cells, the same package sources (``tlcourse/**``) and the same installed versions, it is
   reused: nothing runs (``book/_ext/nbcache.py`` explains the fingerprint).
2. Otherwise the notebook runs under nbval (``pytest --nbval-lax``), in its own process, and
   the outputs nbval collected are stored in the cache (``scripts/nbval_capture.py``). The book
   build (``jupyter-book build``) then finds every notebook in the cache and executes none.

It prints one line per notebook (wall time and peak memory of its run, against its budget, or
the figures of the cached run) and writes them to ``_build/notebook_times.json``. It fails when
a notebook fails. Budgets are checked only with ``--check-budgets`` (``make budgets``, which
also forces a fresh run of every notebook): a busy machine must not turn ``make test`` red.
Budgets (2-core CPU machine): 150 s per notebook, chapters 4 and 6 240 s, 20 min in all,
3 GB peak memory.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "book" / "_ext"))
import nbcache  # noqa: E402
from toc import ROOT, toc_notebooks  # noqa: E402

BUDGET_S = {"04_finetune_text": 240.0, "06_adversarial_adaptation": 240.0}
DEFAULT_BUDGET_S = 150.0
TOTAL_BUDGET_S = 1200.0
MEMORY_BUDGET_MB = 3072.0
TIMES_JSON = ROOT / "_build" / "notebook_times.json"


def budget_of(notebook: Path) -> float:
    return BUDGET_S.get(notebook.stem, DEFAULT_BUDGET_S)


def execute(notebook: Path, executed_dir: Path, root: Path = ROOT) -> dict[str, object]:
    """Run one notebook under nbval in its own process; wall time and peak RSS (kernel included)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "--nbval-lax", "--nbval-cell-timeout=900", "-p", "no:cacheprovider",
           "-p", "nbval_capture", f"--nbval-executed-dir={executed_dir}", str(notebook)]
    python_path = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    env = {**nbcache.ENVIRONMENT, **os.environ, "PYTHONPATH": python_path}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    assert proc.stdout is not None
    out = proc.stdout.read()
    # wait4 gives this run's own peak RSS, the kernel it started included (Linux reports KiB)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    passed = os.waitstatus_to_exitcode(status) == 0 and (executed_dir / notebook.name).exists()
    if not passed:
        print(out[-6000:])
    return {"seconds": round(seconds, 1), "peak_mb": round(usage.ru_maxrss / 1024), "passed": passed,
            "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1)}


def run_all(notebooks: list[Path], force: bool = False, root: Path = ROOT,
            cache_dir: Path = nbcache.CACHE_DIR) -> list[dict[str, object]]:
    """Execute the notebooks whose cached copy is missing or stale (all with ``force``); one record each."""
    current = nbcache.fingerprint(root)
    removed = nbcache.remove_stale(current, cache_dir)
    if removed:
        print(f"run_notebooks: {len(removed)} cached notebook(s) were executed with other package sources or "
              "versions; they run again")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for nb in notebooks:
            rel = str(nb.relative_to(root))
            stamp = None if force else nbcache.lookup(nb, current, cache_dir)
            if stamp is not None:
                r = {"notebook": rel, "seconds": stamp.get("seconds"), "peak_mb": stamp.get("peak_mb"),
                     "cpu_seconds": stamp.get("cpu_seconds"), "passed": True, "cached": True,
                     "executed_at": stamp.get("executed_at")}
            else:
                r = {"notebook": rel, **execute(nb, Path(tmp), root), "cached": False,
                     "executed_at": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}
                if r["passed"]:
                    executed = nbformat.read(str(Path(tmp) / nb.name), as_version=4)
                    stats = {k: r[k] for k in ("seconds", "peak_mb", "cpu_seconds", "executed_at")}
                    nbcache.store(nb, executed, current, stats, cache_dir)
            r["budget_s"] = budget_of(nb)
            results.append(r)
            print(_line(r), flush=True)
    return results


def _line(r: dict[str, object]) -> str:
    status = "PASS" if r["passed"] else "FAIL"
    seconds, peak = r.get("seconds"), r.get("peak_mb")
    timing = f"{seconds:7.1f} s  peak {peak:5.0f} MB" if seconds is not None and peak is not None else " " * 26
    note = f"(cached run of {r.get('executed_at')})" if r.get("cached") else ""
    over = "  over budget" if seconds is not None and seconds > float(r["budget_s"]) else ""
    return f"{status}  {r['notebook']:<42} {timing}  budget {float(r['budget_s']):4.0f} s{over} {note}".rstrip()


def check_budgets(results: list[dict[str, object]]) -> list[str]:
    """Every notebook within its time and memory budget, all of them within the total."""
    problems = []
    for r in results:
        if r.get("seconds") is None:
            problems.append(f"{r['notebook']}: no measured time")
            continue
        if float(r["seconds"]) > float(r["budget_s"]):
            problems.append(f"{r['notebook']}: {r['seconds']} s > budget {r['budget_s']:.0f} s")
        if float(r["peak_mb"]) > MEMORY_BUDGET_MB:
            problems.append(f"{r['notebook']}: peak {r['peak_mb']} MB > {MEMORY_BUDGET_MB:.0f} MB")
    total = sum(float(r.get("seconds") or 0) for r in results)
    if total > TOTAL_BUDGET_S:
        problems.append(f"all notebooks: {total:.0f} s > {TOTAL_BUDGET_S:.0f} s")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path)
    parser.add_argument("--force", action="store_true", help="execute even the notebooks whose cached copy is fresh")
    parser.add_argument("--check-budgets", action="store_true",
                        help="exit non-zero when a notebook exceeds its time or memory budget (the benchmark)")
    parser.add_argument("--json", type=Path, default=TIMES_JSON)
    args = parser.parse_args()
    notebooks = [p.resolve() for p in args.notebooks] or toc_notebooks()
    results = run_all(notebooks, args.force)
    executed = [r for r in results if not r["cached"]]
    total = sum(float(r.get("seconds") or 0) for r in results)
    failed = [str(r["notebook"]) for r in results if not r["passed"]]
    executed_s = sum(float(r["seconds"]) for r in executed)
    print(f"notebooks: {len(results) - len(failed)} passed, {len(failed)} failed; {len(executed)} executed now "
          f"({executed_s:.1f} s), {len(results) - len(executed)} reused from the cache; "
          f"all notebooks {total:.1f} s (budget {TOTAL_BUDGET_S:.0f} s)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"total_seconds": round(total, 1), "notebooks": results}, indent=2))
    if args.check_budgets:
        problems = check_budgets(results)
        for p in problems:
            print(f"budget: {p}")
        print(f"budgets: {'all within budget' if not problems else f'{len(problems)} over budget'}")
        if problems:
            return 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
