"""The pilot that fixed chapter 6's selection criterion (run before the chapter; never on test).

It executes the chapter's own cells up to its first ``run_seed(...)`` call, with the chapter's
seeds replaced by pilot seeds the chapter does not use, then runs every method for those seeds.
Each candidate (method, setting, checkpoint) is scored by every label-free criterion and by the
*audit set* — labelled target **training** images that the chapter uses only for its regret
table; the target test set is never opened. For each criterion and seed it prints the
candidate the criterion picks, its audit-accuracy gain over source-only + AdaBN and its regret
against the audit-best candidate: what the chapter's declared criterion and claims rest on.

    HF_HUB_OFFLINE=1 python scripts/pilot_ch06.py              # seeds 100,101,102: ~3 minutes
    python scripts/pilot_ch06.py --seeds 100 --save pilot.pkl
"""

from __future__ import annotations

import argparse
import os
import pickle
import re
from pathlib import Path

from tlcourse.adapt.selection import CRITERIA  # name -> (larger is better, uses target labels, description)

CHAPTER = Path(__file__).resolve().parent.parent / "book" / "06_adversarial_adaptation.py"


def run(seeds: list[int]) -> list[dict]:
    """Every candidate of every pilot seed, with its criterion scores and audit accuracy."""
    namespace: dict = {"__name__": "__main__"}
    os.chdir(CHAPTER.parent)
    for cell in re.split(r"^# %%.*$", CHAPTER.read_text(), flags=re.M):
        code = [line for line in cell.strip().splitlines() if line.strip() and not line.startswith("#")]
        if not code:
            continue
        if code[0].startswith("run_seed("):
            break
        exec(compile(re.sub(r"^SEEDS = \[.*?\]", f"SEEDS = {seeds}", cell, flags=re.M), str(CHAPTER), "exec"),
             namespace)
    rows = []
    for seed in seeds:
        namespace["run_seed"](seed)
        for name, cand in namespace["candidates"][seed].items():
            if cand["method"] != "oracle":
                rows.append({"seed": seed, "candidate": name, **{k: v for k, v in cand.items() if k != "model"}})
    return rows


def report(rows: list[dict]) -> None:
    import pandas as pd

    frame = pd.DataFrame(rows)
    for criterion, (larger_is_better, _, _) in CRITERIA.items():
        picks = []
        for seed, part in frame.groupby("seed"):
            adabn = part.set_index("candidate").loc["source-only + AdaBN", "audit"]
            pick = part.loc[part[criterion].idxmax() if larger_is_better else part[criterion].idxmin()]
            picks.append(f"seed {seed}: {pick.candidate[:32]:32s} gain {100 * (pick.audit - adabn):+5.1f} "
                         f"regret {100 * (part.audit.max() - pick.audit):4.1f}")
        print(f"{criterion:10s} | " + " | ".join(picks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="100,101,102", help="comma-separated pilot seeds (not the chapter's)")
    parser.add_argument("--save", help="also pickle the candidate rows here")
    args = parser.parse_args()
    rows = run([int(s) for s in args.seeds.split(",")])
    if args.save:
        with open(args.save, "wb") as f:
            pickle.dump(rows, f)
    report(rows)


if __name__ == "__main__":
    main()
