"""Model compression measured: size on disk, latency and throughput, int8 quantization, pruning.

Chapter 8 of the book puts distillation (:mod:`tlcourse.distill`) side by side with the two
other standard ways to make a network cheaper to ship (Han et al. 2016, *Deep Compression*;
Jacob et al. 2018, *Quantization and Training of Neural Networks for Efficient
Integer-Arithmetic-Only Inference*):

* **quantization** stores weights (and, statically, activations) as 8-bit integers with a
  scale: :func:`quantize_dynamic_int8` (weights int8, activations quantized on the fly; PyTorch
  applies it to ``nn.Linear``/recurrent layers only) and :func:`quantize_static_int8`
  (post-training static quantization of convolutions too, calibrated on a few batches);
* **magnitude pruning** zeroes the weights of smallest absolute value (:func:`magnitude_prune`);
  dense storage does not shrink, a compressed file does (:func:`size_on_disk` with
  ``compressed=True``), and dense kernels do not run faster.

:func:`measure_latency` times a model with ``torch.utils.benchmark`` (warm-up, repeated blocks,
median and interquartile range). Timings depend on the machine and on its load: report the
machine with them and never assert tight ratios of latencies.

PyTorch marks ``torch.ao.quantization`` as deprecated in favour of the ``torchao`` package; the
eager and FX APIs used here still ship with it, and their deprecation warnings are silenced.
"""

from __future__ import annotations

import copy
import io
import warnings
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn
from torch.nn.utils import prune

from tlcourse.checks import check_int, check_positive, check_tensor

__all__ = ["size_on_disk", "sparsity", "magnitude_prune", "quantize_dynamic_int8", "quantize_static_int8",
           "measure_latency"]

PRUNABLE: tuple[type[nn.Module], ...] = (nn.Conv2d, nn.Linear)


def _check_model(model: Any) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def size_on_disk(model: nn.Module, *, compressed: bool = False) -> int:
    """Bytes of ``model``'s serialized state dict (``torch.save`` format, held in memory).

    ``compressed=True`` gives the size after zlib (level 6, as in a ``.zip``/``.gz`` file): the
    size that pruning's zeros can actually save. Works for float and quantized models alike
    (quantized weights are not tensors that safetensors can store).
    """
    _check_model(model)
    if not isinstance(compressed, bool):
        raise TypeError(f"compressed must be a bool, got {type(compressed).__name__}")
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    raw = buffer.getvalue()
    return len(zlib.compress(raw, 6)) if compressed else len(raw)


def _prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in model.modules() if isinstance(m, PRUNABLE)]


def sparsity(model: nn.Module) -> float:
    """Fraction of exactly-zero weights among the model's convolution and linear weights."""
    layers = _prunable(_check_model(model))
    if not layers:
        raise ValueError("model has no nn.Conv2d or nn.Linear layer whose sparsity could be measured")
    zeros = sum(int((getattr(m, n) == 0).sum()) for m, n in layers)
    return zeros / sum(getattr(m, n).numel() for m, n in layers)


def magnitude_prune(model: nn.Module, amount: float, *, global_: bool = True) -> nn.Module:
    """A copy of ``model`` with the ``amount`` fraction of smallest-magnitude weights set to zero.

    Unstructured L1 (magnitude) pruning of every ``nn.Conv2d``/``nn.Linear`` weight with
    ``torch.nn.utils.prune``: over all layers at once (``global_=True``, Han et al. 2015) or
    layer by layer. The pruning is then made permanent (``prune.remove``: no masks, no
    ``weight_orig``), so the result is an ordinary module. ``model`` is left untouched.
    """
    _check_model(model)
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not 0.0 <= amount < 1.0:
        raise ValueError(f"amount must be a fraction in [0, 1) of the weights to remove, got {amount!r}")
    pruned = copy.deepcopy(model)
    layers = _prunable(pruned)
    if not layers:
        raise ValueError("model has no nn.Conv2d or nn.Linear layer to prune")
    if global_:
        prune.global_unstructured(layers, pruning_method=prune.L1Unstructured, amount=float(amount))
    else:
        for module, name in layers:
            prune.l1_unstructured(module, name, amount=float(amount))
    for module, name in layers:
        prune.remove(module, name)
    return pruned


def quantize_dynamic_int8(model: nn.Module) -> nn.Module:
    """Dynamic int8 quantization (``torch.ao.quantization.quantize_dynamic``) of a copy of ``model``.

    Weights of ``nn.Linear`` layers are stored as int8 with a per-tensor scale; activations are
    quantized on the fly at every call. PyTorch's dynamic mode covers linear and recurrent layers
    only (transformers, LSTMs): a convolutional network keeps its convolutions in float32, so
    its size barely changes; use :func:`quantize_static_int8` for those. CPU inference only.
    """
    _check_model(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(model).cpu().eval(), {nn.Linear}, dtype=torch.qint8)


class _TraceableResNet(nn.Module):
    """The course's :class:`~tlcourse.models.SmallResNet` without its input checks, for FX tracing."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        b = model.backbone
        self.register_buffer("mean", b.mean.clone())
        self.register_buffer("std", b.std.clone())
        self.stem, self.layer1, self.layer2, self.layer3, self.pool = b.stem, b.layer1, b.layer2, b.layer3, b.pool
        self.head = model.head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return self.head(self.pool(self.layer3(self.layer2(self.layer1(self.stem(x))))).flatten(1))


def _calibration_batches(calibration: Any, batch_size: int) -> Iterable[torch.Tensor]:
    if isinstance(calibration, torch.Tensor):
        check_tensor("calibration", calibration, dtype="float")
        return [calibration[i: i + batch_size] for i in range(0, len(calibration), batch_size)]
    if not hasattr(calibration, "__len__") or not hasattr(calibration, "__getitem__"):
        raise TypeError(f"calibration must be a tensor of inputs or a dataset of (input, label), "
                        f"got {type(calibration).__name__}")
    loader = torch.utils.data.DataLoader(calibration, batch_size=batch_size, shuffle=False)
    return [batch[0] if isinstance(batch, (list, tuple)) else batch for batch in loader]


def quantize_static_int8(
    model: nn.Module, calibration: Any, *, batch_size: int = 64, backend: str = "x86"
) -> nn.Module:
    """Post-training static int8 quantization (FX graph mode) of a copy of ``model``.

    Convolution + batch norm + ReLU are fused, observers record the range of every activation
    on ``calibration`` (a few hundred training or validation inputs, never test data), then
    weights *and* activations become int8 (Jacob et al. 2018). The course's ``SmallResNet``
    is traced without its input checks, so the quantized model expects ``(N, C, H, W)`` float
    inputs with the backbone's channel count. CPU inference only.
    """
    _check_model(model)
    check_int("batch_size", batch_size, minimum=1)
    if backend not in torch.backends.quantized.supported_engines:
        raise ValueError(f"backend must be one of {torch.backends.quantized.supported_engines}, got {backend!r}")
    batches = list(_calibration_batches(calibration, batch_size))
    if not batches or sum(len(b) for b in batches) == 0:
        raise ValueError("calibration is empty: give a few hundred representative inputs")
    float_model = copy.deepcopy(model).cpu().eval()
    if hasattr(float_model, "backbone") and hasattr(float_model, "head"):
        float_model = _TraceableResNet(float_model).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

        torch.backends.quantized.engine = backend
        observed = prepare_fx(float_model, get_default_qconfig_mapping(backend), example_inputs=(batches[0][:1],))
        with torch.no_grad():
            for x in batches:
                observed(x.float().cpu())
        return convert_fx(observed)


def measure_latency(
    model: nn.Module,
    example: torch.Tensor,
    *,
    batch_sizes: Sequence[int] = (1, 64),
    min_run_time: float = 0.2,
    num_threads: int | None = None,
) -> list[dict[str, float]]:
    """Inference latency and throughput of ``model`` on CPU with ``torch.utils.benchmark``.

    ``example`` is one input ``(C, H, W)`` (or a batch, whose first item is used); it is repeated
    to every batch size. For each batch size the timer warms up, then runs blocks of calls for
    at least ``min_run_time`` seconds. Returns one row per batch size: ``batch_size``,
    ``median_ms`` and ``iqr_ms`` (per call, median and interquartile range over blocks) and
    ``images_per_s`` (batch size / median). On a shared machine the spread is large: report the
    median and the machine, not a single best run.
    """
    import torch.utils.benchmark as benchmark

    _check_model(model)
    check_tensor("example", example, dtype="float")
    if example.dim() < 2:
        raise ValueError(f"example must be one input (C, H, W) or a batch of them, got shape {tuple(example.shape)}")
    check_positive("min_run_time", min_run_time)
    if isinstance(batch_sizes, (int, str)) or not list(batch_sizes):
        raise ValueError(f"batch_sizes must be a non-empty list of ints, got {batch_sizes!r}")
    sizes = [check_int("batch_sizes", b, minimum=1) for b in batch_sizes]
    threads = check_int("num_threads", num_threads, minimum=1) if num_threads is not None else torch.get_num_threads()
    one = example if example.dim() == 3 else example[0]
    model.eval()
    rows = []
    for b in sizes:
        x = one.unsqueeze(0).expand(b, *one.shape).contiguous().cpu()
        timer = benchmark.Timer("with torch.no_grad(): model(x)", globals={"model": model, "x": x, "torch": torch},
                                num_threads=threads)
        m = timer.blocked_autorange(min_run_time=min_run_time)
        rows.append({"batch_size": b, "median_ms": 1e3 * m.median, "iqr_ms": 1e3 * m.iqr, "images_per_s": b / m.median})
    return rows
