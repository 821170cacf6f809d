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
* :func:`lora_state_dict` — just the adapter weights (a few hundred KB), e.g. for safetensors.
* :func:`count_parameters` — all or trainable parameters (re-exported from :mod:`tlcourse.utils`).

The forward pass equals ``peft``'s ``LoraModel`` for the same ``A``, ``B``, ``r`` and ``alpha``
(tested in ``tests/test_lora.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tlcourse.checks import check_int, check_positive, check_probability
from tlcourse.utils import count_parameters

__all__ = ["LoRALinear", "apply_lora", "merge_lora", "lora_state_dict", "count_parameters"]


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
            raise ValueError(f"r must be <= min(in_features, out_features) = {min(base.in_features, base.out_features)}, got {r}")
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
        raise ValueError(f"no nn.Linear layer matches target_modules={tuple(target_modules)}; linear layer names: {linear}")
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
