"""Checkpoints as safetensors: weights, optimizer state and JSON metadata, written atomically.

A checkpoint is one ``.safetensors`` file. Tensors are stored under ``model.*``, ``optimizer.*``
and ``extra.*`` keys; everything else (epoch, history, optimizer hyper-parameters) is JSON in the
file's metadata. Files are written to a temporary name in the same folder and renamed, so an
interrupted save never leaves a half-written checkpoint. Nothing is unpickled when loading.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

__all__ = ["save_checkpoint", "load_checkpoint", "save_weights", "load_weights", "atomic_save"]

_META_KEY = "tlcourse"


def atomic_save(tensors: dict[str, torch.Tensor], path: str | os.PathLike,
                metadata: dict[str, str] | None = None) -> Path:
    """Write ``tensors`` to ``path`` as safetensors via a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    module = model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model
    return {k: v for k, v in module.state_dict().items()}


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def save_weights(path: str | os.PathLike, model: nn.Module, metadata: dict[str, Any] | None = None) -> Path:
    """Save only the model's weights (and buffers) to a safetensors file.

    The model's ``class_names`` (when it has them) are stored in the metadata and restored by
    :func:`load_weights`.
    """
    metadata = dict(metadata or {})
    names = getattr(_unwrap(model), "class_names", None)
    if names is not None and "class_names" not in metadata:
        metadata["class_names"] = list(names)
    meta = {_META_KEY: json.dumps(metadata)}
    return atomic_save(_model_state(model), path, meta)


def load_weights(path: str | os.PathLike, model: nn.Module, strict: bool = True) -> dict[str, Any]:
    """Load weights saved by :func:`save_weights` (or ``model.*`` of a checkpoint) into ``model``.

    Returns the metadata; saved ``class_names`` are set on the model as ``model.class_names``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path does not exist: {path}")
    tensors, meta = _read(path)
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")} or tensors
    module = model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model
    module.load_state_dict(state, strict=strict)
    if isinstance(meta.get("class_names"), list):
        module.class_names = list(meta["class_names"])
    return meta


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        with safe_open(str(path), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
            raw = (f.metadata() or {}).get(_META_KEY, "{}")
    except Exception as err:  # safetensors raises its own error types
        raise ValueError(f"path is not a readable safetensors checkpoint: {path} ({err})") from err
    return tensors, json.loads(raw)


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    **state: Any,
) -> Path:
    """Save model weights, optimizer state and JSON-serialisable ``state`` in one safetensors file."""
    tensors = {f"model.{k}": v for k, v in _model_state(model).items()}
    meta: dict[str, Any] = {"state": state}
    if optimizer is not None:
        opt = optimizer.state_dict()
        opt_meta: dict[str, Any] = {"param_groups": opt["param_groups"], "state": {}}
        for pid, pstate in opt["state"].items():
            entry = {}
            for key, value in pstate.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"optimizer.{pid}.{key}"] = value
                    entry[key] = "__tensor__"
                else:
                    entry[key] = value
            opt_meta["state"][str(pid)] = entry
        meta["optimizer"] = opt_meta
    for key, value in (extra_tensors or {}).items():
        tensors[f"extra.{key}"] = value
    try:
        encoded = json.dumps(meta)
    except TypeError as err:
        raise TypeError(f"state must be JSON-serialisable (numbers, strings, lists, dicts): {err}") from err
    return atomic_save(tensors, path, {_META_KEY: encoded})


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
) -> dict[str, Any]:
    """Restore what :func:`save_checkpoint` wrote; returns the JSON state plus ``extra_tensors``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"path does not exist: {path}")
    tensors, meta = _read(path)
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    module = model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model
    module.load_state_dict(model_state)
    if optimizer is not None:
        if "optimizer" not in meta:
            raise ValueError(f"optimizer state was requested but {path} holds none")
        opt_meta = meta["optimizer"]
        opt_state = {}
        for pid, entry in opt_meta["state"].items():
            opt_state[int(pid)] = {
                key: tensors[f"optimizer.{pid}.{key}"] if value == "__tensor__" else value
                for key, value in entry.items()
            }
        optimizer.load_state_dict({"state": opt_state, "param_groups": opt_meta["param_groups"]})
    out = dict(meta.get("state", {}))
    out["extra_tensors"] = {k[len("extra."):]: v for k, v in tensors.items() if k.startswith("extra.")}
    return out
