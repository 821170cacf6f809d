"""Runs every case of tests/engine_cases.py under torchrun (2 CPU processes, gloo); rank 0 saves the results."""

import json
import sys
from pathlib import Path

from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))

import engine_cases  # noqa: E402

from tlcourse.distributed import cleanup, is_main_process, setup, world_size  # noqa: E402

if __name__ == "__main__":
    out = Path(sys.argv[1])
    setup("gloo")
    for name, run in engine_cases.CASES.items():
        modules, history = run(sync_batchnorm=True)
        if is_main_process():
            save_file(engine_cases.flat_state(modules), str(out / f"{name}.safetensors"))
            record = {"world_size": world_size(), **engine_cases.comparable(history)}
            (out / f"{name}.json").write_text(json.dumps(record))
    cleanup()
