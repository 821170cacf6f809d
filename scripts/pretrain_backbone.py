"""Regenerate a shipped backbone in ``tlcourse/models/weights/``.

Source task: classification of printed characters (``tlcourse.data.glyphs``), with a fresh
augmented sample every epoch. Two backbones come from the same recipe:

* ``glyphs-resnet`` — all 53 characters: the digits 0-9, A-Z and the distinct lower-case
  letters, on colour and texture backgrounds like MNIST-M's. Its source classes *include the
  digits* that the book's target tasks classify.
* ``letters-resnet`` (``--letters-only``) — the same recipe on the 43 letters only: *no digit
  classes*, so a transfer to digits crosses to a label space the source never saw.

Runs on one CPU thread so the result is deterministic for a given PyTorch/Pillow version
(about 10-20 minutes on a laptop core):

    python scripts/pretrain_backbone.py                  # glyphs-resnet: weights + model card
    python scripts/pretrain_backbone.py --letters-only   # letters-resnet: weights + model card
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
from tlcourse.data.digits import ArrayDataset
from tlcourse.data.glyphs import GLYPH_CLASSES, GLYPH_FONTS, load_glyphs
from tlcourse.models import SmallResNet
from tlcourse.train import evaluate, fit
from tlcourse.utils import seed_everything

WEIGHTS = Path(__file__).resolve().parents[1] / "tlcourse" / "models" / "weights"
DIGITS = set("0123456789")
LETTER_CLASSES: list[str] = [c for c in GLYPH_CLASSES if c not in DIGITS]


def source_sample(n_per_class: int, seed: int, letters_only: bool) -> ArrayDataset:
    """A seeded augmented sample of the source task; ``letters_only`` drops the digit classes.

    The letters-only sample is the all-characters sample with the digit images removed and the
    labels renumbered 0..42, so both backbones see the same images of the letters.
    """
    data = load_glyphs(n_per_class, seed=seed)
    if not letters_only:
        return data
    keep_old = [i for i, c in enumerate(GLYPH_CLASSES) if c not in DIGITS]
    remap = torch.full((len(GLYPH_CLASSES),), -1, dtype=torch.long)
    remap[keep_old] = torch.arange(len(keep_old))
    new = remap[data.labels]
    rows = new >= 0
    return ArrayDataset(data.images[rows].contiguous(), new[rows], LETTER_CLASSES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--per-class", type=int, default=600, help="fresh images per class and epoch")
    parser.add_argument("--widths", type=int, nargs=3, default=(32, 64, 128))
    parser.add_argument("--letters-only", action="store_true", help="drop the digit classes 0-9 (letters-resnet)")
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args()

    name = "letters-resnet" if args.letters_only else "glyphs-resnet"
    classes = LETTER_CLASSES if args.letters_only else GLYPH_CLASSES
    torch.set_num_threads(1)
    seed_everything(0)
    model = SmallResNet(len(classes), widths=args.widths)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps_per_epoch = -(-args.per_class * len(classes) // 128)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.1, total_steps=args.epochs * steps_per_epoch)
    test = source_sample(100, 10_000, args.letters_only)  # held-out sample (its own seed)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        train = source_sample(args.per_class, epoch + 1, args.letters_only)  # fresh augmented sample each epoch
        fit(model, train, epochs=1, optimizer=optimizer, scheduler=scheduler, scheduler_interval="step",
            batch_size=128, seed=epoch, progress=False)
        acc = evaluate(model, test)["accuracy"]
        seconds = time.perf_counter() - start
        print(f"epoch {epoch + 1}/{args.epochs}  source test accuracy {acc:.4f}  ({seconds:.0f} s)", flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / f"{name}.safetensors"
    card = {"name": name, **_card(args, classes, acc, len(test), time.perf_counter() - start)}
    save_weights(weights, model, metadata={"model_card": card})
    card["file_bytes"] = weights.stat().st_size
    (args.out / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    print(json.dumps(card, indent=2))


def _card(args: argparse.Namespace, classes: list[str], acc: float, test_size: int, seconds: float) -> dict:
    """The model card: the source classes listed plainly, and whether they include the digits."""
    card_name = "letters-resnet" if args.letters_only else "glyphs-resnet"
    if args.letters_only:
        task = (f"{len(classes)}-way printed-letter classification (A-Z and the distinct lower-case letters; "
                "no digit classes)")
        digits = "no digit classes: the digits 0-9 were removed from the source task"
    else:
        task = (f"{len(classes)}-way printed-character classification (the digits 0-9, A-Z and the distinct "
                "lower-case letters)")
        digits = ("the 53 source classes INCLUDE the digits 0-9, the target classes of the book's digit tasks "
                  "(MNIST, UCI digits, MNIST-M); see letters-resnet for a backbone without them")
    return {
        "architecture": "tlcourse.models.SmallResNet",
        "widths": list(args.widths),
        "input": {"range": [0.0, 1.0], "dtype": "float (uint8 images: divide by 255, or use model.preprocess)",
                  "channels": "1 or 3 (grey images are repeated to 3)", "input_size": [28, 28], "min_size": [8, 8],
                  "normalisation": "inside the model (mean 0.5, std 0.25 per channel): do not normalise the input",
                  "preprocess": f"tlcourse.models.preprocessing({card_name!r}) / model.preprocess "
                                "(resize to 28x28, [0, 1])"},
        "parameters": sum(p.numel() for p in SmallResNet(len(classes), widths=args.widths).parameters()),
        "source_task": f"{task}, rendered from {len(GLYPH_FONTS)} fonts shipped with matplotlib, randomly "
                       "transformed, and (three images in four) coloured on smooth random colour and texture "
                       "backgrounds like MNIST-M's; the rest plain light-on-dark grey",
        "source_classes": len(classes),
        "source_class_names": "".join(classes),
        "digit_classes": digits,
        "source_test_accuracy": round(acc, 4),
        "source_test_size": test_size,
        "training": {"epochs": args.epochs, "images_per_epoch": args.per_class * len(classes),
                     "optimizer": "SGD momentum 0.9 nesterov, weight decay 5e-4, one-cycle lr 0.1, batch 128",
                     "seconds": round(seconds, 1)},
        "regenerate": "python scripts/pretrain_backbone.py" + (" --letters-only" if args.letters_only else ""),
        "versions": {"tlcourse": tlcourse.__version__, "torch": torch.__version__, "python": platform.python_version()},
        "licence": "MIT (weights); fonts: DejaVu (Bitstream Vera licence), STIX (SIL OFL), Computer Modern (Knuth)",
    }


if __name__ == "__main__":
    main()
