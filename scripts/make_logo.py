"""Draw the book's logo and favicon (book/images/logo.png, favicon.png) with matplotlib.

Two domains, source and target, overlapping: what transfers lives in the overlap.
Usage: python scripts/make_logo.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "book" / "images"


def draw(path: Path, size: float, dpi: int, text: bool) -> None:
    fig = plt.figure(figsize=(size, size), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set(xlim=(0, 1), ylim=(0, 1), aspect="equal")
    ax.axis("off")
    ax.add_patch(Circle((0.37, 0.5), 0.27, color="#1f77b4", alpha=0.85))
    ax.add_patch(Circle((0.63, 0.5), 0.27, color="#ff7f0e", alpha=0.75))
    ax.add_patch(FancyArrowPatch((0.22, 0.16), (0.80, 0.16), arrowstyle="-|>", mutation_scale=22 * size, lw=3 * size,
                                 color="#333333"))
    if text:
        ax.text(0.5, 0.52, "TL", ha="center", va="center", fontsize=34 * size, weight="bold", color="white")
    fig.savefig(path, transparent=True)
    plt.close(fig)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    draw(OUT / "logo.png", 2.0, 100, text=True)
    draw(OUT / "favicon.png", 0.64, 50, text=False)
    print(f"wrote {OUT / 'logo.png'} and {OUT / 'favicon.png'}")
