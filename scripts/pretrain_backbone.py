"""Regenerate the shipped backbone ``tlcourse/models/weights/glyphs-resnet.safetensors``.

Source task: 53-way classification of printed characters (``tlcourse.data.glyphs``), with a
fresh augmented sample every epoch. Runs on one CPU thread so the result is deterministic for
a given PyTorch/Pillow version (about 10 minutes on a laptop core):

    python scripts/pretrain_backbone.py            # writes the weights and the model card
    python scripts/pretrain_backbone.py --epochs 1 --per-class 20 --out /tmp/x   # smoke test
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import tlcourse
from tlcourse.checkpoint import save_weights
from tlcourse.data.glyphs import GLYPH_CLASSES, GLYPH_FONTS, load_glyphs
from tlcourse.models import SmallResNet
from tlcourse.train import evaluate, fit
from tlcourse.utils import seed_everything

WEIGHTS = Path(__file__).resolve().parents[1] / "tlcourse" / "models" / "weights"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--per-class", type=int, default=600, help="fresh images per class and epoch")
    parser.add_argument("--widths", type=int, nargs=3, default=(32, 64, 128))
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args()

    torch.set_num_threads(1)
    seed_everything(0)
    model = SmallResNet(len(GLYPH_CLASSES), widths=args.widths)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps_per_epoch = -(-args.per_class * len(GLYPH_CLASSES) // 128)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.1, total_steps=args.epochs * steps_per_epoch)
    test = load_glyphs(100, seed=10_000)  # held-out sample (its own seed)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        train = load_glyphs(args.per_class, seed=epoch + 1)  # a fresh augmented sample each epoch
        fit(model, train, epochs=1, optimizer=optimizer, scheduler=scheduler, scheduler_interval="step",
            batch_size=128, seed=epoch, progress=False)
        acc = evaluate(model, test)["accuracy"]
        print(f"epoch {epoch + 1}/{args.epochs}  source test accuracy {acc:.4f}  ({time.perf_counter() - start:.0f} s)", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / "glyphs-resnet.safetensors"
    card = {
        "name": "glyphs-resnet",
        "architecture": "tlcourse.models.SmallResNet",
        "widths": list(args.widths),
        "input": {"range": [0.0, 1.0], "dtype": "float (uint8 images: divide by 255, or use model.preprocess)",
                  "channels": "1 or 3 (grey images are repeated to 3)", "input_size": [28, 28], "min_size": [8, 8],
                  "normalisation": "inside the model (mean 0.5, std 0.25 per channel): do not normalise the input",
                  "preprocess": "tlcourse.models.preprocessing('glyphs-resnet') / model.preprocess "
                                "(resize to 28x28, [0, 1])"},
        "parameters": sum(p.numel() for p in model.parameters()),
        "source_task": "53-way printed-character classification (0-9, A-Z, distinct a-z) rendered from "
                       f"{len(GLYPH_FONTS)} fonts shipped with matplotlib, randomly transformed, coloured and textured",
        "source_classes": len(GLYPH_CLASSES),
        "source_test_accuracy": round(acc, 4),
        "source_test_size": len(test),
        "training": {"epochs": args.epochs, "images_per_epoch": args.per_class * len(GLYPH_CLASSES),
                     "optimizer": "SGD momentum 0.9 nesterov, weight decay 5e-4, one-cycle lr 0.1, batch 128",
                     "seconds": round(time.perf_counter() - start, 1)},
        "regenerate": "python scripts/pretrain_backbone.py",
        "versions": {"tlcourse": tlcourse.__version__, "torch": torch.__version__, "python": platform.python_version()},
        "licence": "MIT (weights); fonts: DejaVu (Bitstream Vera licence), STIX (SIL OFL), Computer Modern (Knuth)",
    }
    save_weights(weights, model, metadata={"model_card": card})
    card["file_bytes"] = weights.stat().st_size
    (args.out / "glyphs-resnet.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))


if __name__ == "__main__":
    main()
