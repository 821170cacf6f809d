"""Training state in one safetensors file: enough to resume a run bitwise.

A run's state is a nest of dicts, lists and tuples whose leaves are tensors, numbers, strings,
``None`` and ``torch.Generator`` states: the modules' ``state_dict()``, the optimizer, scheduler and
grad-scaler states, random-number-generator states, the data order, method state (DANN's step
counter, DWA's loss history, GradNorm's initial losses), the history so far. :func:`save_state`
stores every tensor under a path-like key and the rest as JSON in the file's metadata, written
atomically (:func:`tlcourse.checkpoint.atomic_save`); :func:`load_state` rebuilds the nest.
Nothing is ever unpickled.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tlcourse.checkpoint import _read, atomic_save

__all__ = ["save_state", "load_state", "rng_state", "set_rng_state", "pack", "unpack"]

_META_KEY = "tlcourse"
_FORMAT = "tlcourse-train-state/1"


def pack(obj: Any, tensors: dict[str, torch.Tensor], path: str = "s") -> Any:
    """JSON-able copy of ``obj``; its tensors move to ``tensors`` (cloned, on the CPU)."""
    if isinstance(obj, torch.Tensor):
        key = f"{path}.{len(tensors)}"
        tensors[key] = obj.detach().to("cpu").clone().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": pack(torch.from_numpy(obj.copy()), tensors, path)}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: pack(v, tensors, f"{path}.{k}") for k, v in obj.items()}
        return {"__items__": [[pack(k, tensors, path), pack(v, tensors, path)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {"__tuple__": [pack(v, tensors, path) for v in obj]}
    if isinstance(obj, list):
        return [pack(v, tensors, path) for v in obj]
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"training state must hold tensors, numbers, strings, lists and dicts, got {type(obj).__name__} "
                    f"at {path}")


def unpack(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`pack`."""
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__ndarray__" in obj:
            return unpack(obj["__ndarray__"], tensors).numpy()
        if "__items__" in obj:
            return {unpack(k, tensors): unpack(v, tensors) for k, v in obj["__items__"]}
        if "__tuple__" in obj:
            return tuple(unpack(v, tensors) for v in obj["__tuple__"])
        return {k: unpack(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [unpack(v, tensors) for v in obj]
    return obj


def save_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (see :func:`pack`) to ``path`` atomically, as safetensors."""
    tensors: dict[str, torch.Tensor] = {}
    meta = {"format": _FORMAT, "state": pack(state, tensors)}
    return atomic_save(tensors, path, {_META_KEY: json.dumps(meta)})


def load_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a state written by :func:`save_state`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path does not exist: {path}")
    tensors, meta = _read(path)
    if meta.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a training checkpoint written by tlcourse's engine (no {_FORMAT!r} state)")
    return unpack(meta["state"], tensors)


def rng_state() -> dict[str, Any]:
    """Every global random generator a run may draw from: Python, NumPy, torch (CPU and CUDA)."""
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
