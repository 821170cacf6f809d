"""LoRA: low-rank adaptation of a frozen pretrained model (Hu et al. 2021), written to be read.

A frozen linear layer ``y = W x + b`` gets a trainable low-rank update (chapter 4, Eq. (4.2))::

    y = W x + b + (alpha / r) · B A x,     A ∈ R^{r × d_in},  B ∈ R^{d_out × r},  r ≪ min(d_in, d_out)

``A`` starts random (Kaiming-uniform, as in the reference implementation and ``peft``) and ``B``
starts at zero, so at initialisation the adapted model computes exactly the pretrained one and
training moves it away smoothly. Only ``A`` and ``B`` are trained: ``r (d_in + d_out)`` numbers
per layer instead of ``d_in d_out``. After training, ``W + (alpha / r) B A`` can be folded into
one matrix (:func:`merge_lora`), so inference costs nothing extra.

* :class:`LoRALinear` — wraps one ``nn.Linear``.
* :func:`apply_lora` — wraps the named linear layers of a model (e.g. the attention ``query``
  and ``value`` projections of a BERT encoder) and freezes everything else except the modules
  you keep trainable (typically the new classification head).
* :func:`merge_lora` — folds every adapter into its base layer (plain ``nn.Linear`` again).
* :func:`lora_state_dict` — just the adapter tensors (without the head: use :func:`save_lora`).
* :func:`save_lora` / :func:`load_lora` — adapters + config + every trainable non-LoRA module
  (the head) in ``peft``'s folder layout; save → load gives the same logits.
* :func:`count_parameters` — all or trainable parameters (re-exported from :mod:`tlcourse.utils`).

The forward pass equals ``peft``'s ``LoraModel`` for the same ``A``, ``B``, ``r`` and ``alpha``
(tested in ``tests/test_lora.py``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from tlcourse.checkpoint import atomic_save
from tlcourse.checks import check_int, check_positive, check_probability
from tlcourse.utils import count_parameters

__all__ = ["LoRALinear", "apply_lora", "merge_lora", "lora_state_dict", "copy_lora_to_peft", "save_lora", "load_lora",
           "count_parameters"]


class LoRALinear(nn.Module):
    """``base(x) + (alpha / r) · B A dropout(x)`` with ``base`` frozen, Eq. (4.2).

    Args:
        base: the pretrained ``nn.Linear`` (its weight and bias are frozen in place).
        r: rank of the update (``>= 1``).
        alpha: scale numerator; the update is multiplied by ``alpha / r`` so that changing ``r``
            does not change the effective learning rate much (Hu et al. 2021, Sec. 4.1).
        dropout: dropout on the adapter's input (0 disables it).
    """

    def __init__(self, base: nn.Linear, r: int = 8, alpha: float = 16.0, dropout: float = 0.0) -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"base must be a torch.nn.Linear, got {type(base).__name__}")
        check_int("r", r, minimum=1)
        check_positive("alpha", alpha)
        check_probability("dropout", dropout)
        if dropout >= 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if r > min(base.in_features, base.out_features):
            limit = min(base.in_features, base.out_features)
            raise ValueError(f"r must be <= min(in_features, out_features) = {limit}, got {r}")
        self.base = base
        for p in self.base.parameters():
            p.requires_grad_(False)
        self.r = r
        self.alpha = float(alpha)
        self.scaling = self.alpha / r
        factory = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r, **factory))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # same as nn.Linear and peft's default
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    def delta_weight(self) -> torch.Tensor:
        """The update ``(alpha / r) B A`` as a ``(d_out, d_in)`` matrix."""
        return self.scaling * (self.lora_B @ self.lora_A)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.base.in_features:
            raise ValueError(f"x must have {self.base.in_features} features in its last dimension (the wrapped "
                             f"layer's in_features), got shape {tuple(x.shape)}")
        # Two thin matmuls (x A^T, then B^T) instead of forming the full d_out × d_in update.
        update = F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B)
        return self.base(x) + self.scaling * update

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` with weight ``W + (alpha / r) B A`` (same outputs in eval mode)."""
        base = self.base
        out = nn.Linear(base.in_features, base.out_features, bias=base.bias is not None,
                        device=base.weight.device, dtype=base.weight.dtype)
        out.weight.copy_(base.weight + self.delta_weight().to(base.weight.dtype))
        if base.bias is not None:
            out.bias.copy_(base.bias)
        for p in out.parameters():
            p.requires_grad_(False)
        return out

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, alpha={self.alpha:g}"


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, module)


def apply_lora(
    model: nn.Module,
    target_modules: Sequence[str] = ("query", "value"),
    r: int = 8,
    alpha: float = 16.0,
    dropout: float = 0.0,
    trainable_modules: Sequence[str] = ("head",),
) -> nn.Module:
    """Wrap the targeted ``nn.Linear`` layers of ``model`` in :class:`LoRALinear`, in place.

    A linear layer is targeted when the last part of its name is in ``target_modules`` (as in
    ``peft``: ``"query"`` matches ``encoder.layer.0.attention.self.query``). Every other
    parameter is frozen, except those of the modules whose name (or last name part) is in
    ``trainable_modules`` — by default ``"head"``, the new classifier of a
    :class:`~tlcourse.models.text.TextClassifier`, which must learn from scratch.

    Returns ``model`` (for chaining). Raises ``ValueError`` when nothing matches.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(target_modules, str):
        target_modules = (target_modules,)
    if isinstance(trainable_modules, str):
        trainable_modules = (trainable_modules,)
    if not target_modules:
        raise ValueError("target_modules is empty: name at least one nn.Linear layer, e.g. ('query', 'value')")
    check_int("r", r, minimum=1)
    check_positive("alpha", alpha)
    check_probability("dropout", dropout)
    if any(isinstance(m, LoRALinear) for m in model.modules()):
        raise ValueError("model already has LoRA layers; merge_lora() it first or apply LoRA once")
    targets = [
        name for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and name.rpartition(".")[2] in target_modules
    ]
    if not targets:
        linear = sorted({n.rpartition(".")[2] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"no nn.Linear layer matches target_modules={tuple(target_modules)}; "
                         f"linear layer names: {linear}")
    keep = [
        name for name, _ in model.named_modules()
        if name and (name in trainable_modules or name.rpartition(".")[2] in trainable_modules)
    ]
    missing = [t for t in trainable_modules if not any(k == t or k.rpartition(".")[2] == t for k in keep)]
    if missing:
        raise ValueError(f"trainable_modules {missing} match no submodule of the model")
    for p in model.parameters():
        p.requires_grad_(False)
    for name in keep:
        for p in model.get_submodule(name).parameters():
            p.requires_grad_(True)
    for name in targets:
        _set_submodule(model, name, LoRALinear(model.get_submodule(name), r=r, alpha=alpha, dropout=dropout))
    return model


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every :class:`LoRALinear` of ``model`` into a plain ``nn.Linear``, in place.

    The merged model gives the same outputs (up to float rounding) with no extra inference cost.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(model, LoRALinear):
        raise TypeError("model is itself a LoRALinear: call its .merged() method instead")
    names = [name for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    if not names:
        raise ValueError("model has no LoRA layers to merge (apply_lora() adds them)")
    for name in names:
        _set_submodule(model, name, model.get_submodule(name).merged())
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the adapter tensors (``...lora_A``/``...lora_B``), e.g. to save with safetensors."""
    return {k: v.detach().clone() for k, v in model.state_dict().items() if k.endswith(("lora_A", "lora_B"))}


ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
_PREFIX = "base_model.model."


def _lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def copy_lora_to_peft(source: nn.Module, peft_model: nn.Module) -> int:
    """Copy the adapters of ``source`` (``apply_lora``) into a ``peft`` LoRA model of the same base, in place.

    Each :class:`LoRALinear` named ``name`` in ``source`` fills the peft tensors
    ``...{name}.lora_A.default.weight`` / ``...lora_B.default.weight``, so the two models start
    from the same adapters (e.g. to compare the implementations, not two random draws). Returns
    the number of tensors copied.
    """
    state = peft_model.state_dict()
    copied = 0
    for name, layer in _lora_layers(source).items():
        for ours, theirs in (("lora_A", "lora_A.default.weight"), ("lora_B", "lora_B.default.weight")):
            keys = [k for k in state if k.endswith(f"{name}.{theirs}")]
            if len(keys) != 1:
                raise ValueError(f"peft_model has {len(keys)} tensors matching {name}.{theirs}: expected exactly one "
                                 "(wrap the same base model, with the same target modules)")
            state[keys[0]] = getattr(layer, ours).detach().clone()
            copied += 1
    peft_model.load_state_dict(state)
    return copied


def _trainable_modules(model: nn.Module) -> list[str]:
    """Names of the modules owning a trainable parameter outside the adapters (e.g. ``["head"]``)."""
    lora = _lora_layers(model)
    owners = []
    for name, p in model.named_parameters():
        owner = name.rpartition(".")[0]
        if p.requires_grad and not any(name.startswith(f"{layer}.") for layer in lora) and owner not in owners:
            owners.append(owner)
    # keep the outermost: "head" covers "head.0"
    return [o for o in owners if not any(o != q and o.startswith(f"{q}.") for q in owners)]


def save_lora(model: nn.Module, directory: str | os.PathLike) -> Path:
    """Save ``model``'s adapters, their configuration and every trainable non-LoRA module (the head).

    The folder follows ``peft``'s layout: ``adapter_config.json`` (``peft_type``, ``r``,
    ``lora_alpha``, ``lora_dropout``, ``target_modules``, ``modules_to_save``) and
    ``adapter_model.safetensors`` with keys ``base_model.model.<layer>.lora_A.weight`` /
    ``lora_B.weight`` and ``base_model.model.<module>.<tensor>`` for the saved modules. Both files
    are written atomically (temporary file, then rename); the model's ``class_names`` go in the
    config. Load with :func:`load_lora` onto the same base model.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    layers = _lora_layers(model)
    if not layers:
        raise ValueError("model has no LoRA layers to save (apply_lora() adds them)")
    settings = {(m.r, m.alpha, m.dropout.p if isinstance(m.dropout, nn.Dropout) else 0.0) for m in layers.values()}
    if len(settings) != 1:
        raise ValueError(f"every LoRA layer must share r, alpha and dropout to be saved in one config, got {settings}")
    r, alpha, dropout = settings.pop()
    keep = _trainable_modules(model)
    tensors: dict[str, torch.Tensor] = {}
    for name, layer in layers.items():
        tensors[f"{_PREFIX}{name}.lora_A.weight"] = layer.lora_A
        tensors[f"{_PREFIX}{name}.lora_B.weight"] = layer.lora_B
    for name in keep:
        for key, value in model.get_submodule(name).state_dict().items():
            tensors[f"{_PREFIX}{name}.{key}"] = value
    from tlcourse.train.inference import model_class_names

    config = {
        "peft_type": "LORA", "r": r, "lora_alpha": alpha, "lora_dropout": dropout, "bias": "none",
        "target_modules": sorted({n.rpartition(".")[2] for n in layers}), "modules_to_save": keep,
        "fan_in_fan_out": False, "inference_mode": True, "task_type": None,
        "tlcourse": {"layers": list(layers), "class_names": model_class_names(model)},
    }
    folder = Path(directory)
    atomic_save(tensors, folder / ADAPTER_WEIGHTS, {"format": "pt"})
    fd, tmp = tempfile.mkstemp(prefix=f".{ADAPTER_CONFIG}.", suffix=".tmp", dir=folder)
    with os.fdopen(fd, "w") as fh:
        json.dump(config, fh, indent=2)
    os.replace(tmp, folder / ADAPTER_CONFIG)
    return folder


def load_lora(model: nn.Module, directory: str | os.PathLike) -> nn.Module:
    """Load what :func:`save_lora` wrote into ``model`` (in place; returned): same logits as when saved.

    ``model`` is the *base* model (as before :func:`apply_lora`; adapters are added from the
    config) or one that already has the same LoRA layers. Every saved tensor must find its place
    and every LoRA layer must be covered, else ``ValueError`` says what does not match.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    folder = Path(directory)
    if not (folder / ADAPTER_CONFIG).is_file() or not (folder / ADAPTER_WEIGHTS).is_file():
        raise FileNotFoundError(f"directory must hold {ADAPTER_CONFIG} and {ADAPTER_WEIGHTS} (save_lora writes "
                                f"them), got {folder}")
    config = json.loads((folder / ADAPTER_CONFIG).read_text())
    if config.get("peft_type") != "LORA":
        raise ValueError(f"{folder / ADAPTER_CONFIG} is not a LoRA adapter config "
                         f"(peft_type={config.get('peft_type')!r})")
    from safetensors.torch import load_file

    tensors = {k.removeprefix(_PREFIX): v for k, v in load_file(str(folder / ADAPTER_WEIGHTS)).items()}
    layers = config.get("tlcourse", {}).get("layers") or sorted(
        {k.rsplit(".", 2)[0] for k in tensors if ".lora_" in k})
    if not _lora_layers(model):
        names = dict(model.named_modules())
        missing = [n for n in layers if not isinstance(names.get(n), nn.Linear)]
        if missing:
            raise ValueError(f"the adapters target layers this model does not have (or that are not nn.Linear): "
                             f"{missing}")
        apply_lora(model, tuple(config["target_modules"]), r=config["r"], alpha=config["lora_alpha"],
                   dropout=config["lora_dropout"], trainable_modules=tuple(config["modules_to_save"]))
    state = {}
    for name in _lora_layers(model):
        for part in ("lora_A", "lora_B"):
            key = f"{name}.{part}.weight"
            if key not in tensors:
                raise ValueError(f"the adapter file has no {key}: it was saved from a model with other LoRA layers")
            state[f"{name}.{part}"] = tensors.pop(key)
    state.update(tensors)
    own = model.state_dict()
    unknown = [k for k in state if k not in own]
    if unknown:
        raise ValueError(f"saved tensors that match nothing in the model: {unknown[:5]}")
    model.load_state_dict(state, strict=False)
    names = config.get("tlcourse", {}).get("class_names")
    if names is not None:
        model.class_names = list(names)
    return model
