"""The input contract of the course's vision backbone, as code (like torchvision's ``weights.transforms()``).

A :class:`~tlcourse.models.resnet.SmallResNet` expects

* **float images in [0, 1]**, shape ``(N, 1 or 3, H, W)`` (grey images are repeated to three
  channels inside the model);
* **no normalisation by the caller**: the model subtracts its own mean and divides by its own
  std (the pretraining statistics, saved with the weights). ImageNet-normalised or 0–255 inputs
  are therefore wrong — the model raises a clear error when it sees them;
* **at least** :data:`MIN_SIZE` × :data:`MIN_SIZE` pixels (the network downsamples by 8); it was
  pretrained at :data:`PRETRAIN_SIZE` × :data:`PRETRAIN_SIZE`, the size to resize to.

:class:`ImagePreprocess` turns what a practitioner has — a PIL image, a ``uint8`` array or tensor
(H×W, H×W×C or C×H×W), a float tensor in [0, 1] — into exactly that, resized to the pretraining
size. It is what :func:`preprocessing` and ``model.preprocess`` return, and what
:func:`tlcourse.train.predict` applies to PIL images. Use it as a dataset transform, e.g.
``torchvision.datasets.ImageFolder(root, transform=model.preprocess)``.

The range and size checks (:func:`check_image_batch`) run inside the model's forward pass. On a
CPU they cost one min/max pass over the batch (measured on the course's 2-core machine: 0.4 ms
for 256 images of 28×28 against 460 ms for the forward pass, under 0.1%). On a GPU reading the
min/max waits for the device (a sync that stalls the pipeline), so there the model checks its
first batch only; inside ``torch.compile`` it does not check. Turn them off with ``model.backbone.check_inputs = False``
(one model) or ``TLCOURSE_CHECK_INPUTS=0`` (everywhere).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["PRETRAIN_SIZE", "MIN_SIZE", "RANGE_TOLERANCE", "ImagePreprocess", "preprocessing", "check_image_batch",
           "input_checks_enabled"]

#: Image size the shipped backbone was pretrained at (pixels per side).
PRETRAIN_SIZE = 28
#: Smallest image side the backbone accepts (it downsamples by 8).
MIN_SIZE = 8
#: How far outside [0, 1] a pixel may lie before the model refuses the batch (resampling overshoot).
RANGE_TOLERANCE = 0.1


def input_checks_enabled() -> bool:
    """``False`` when ``TLCOURSE_CHECK_INPUTS=0`` (or ``false``/``no``/``off``) is set."""
    return os.environ.get("TLCOURSE_CHECK_INPUTS", "1").strip().lower() not in ("0", "false", "no", "off")


def check_image_batch(name: str, x: torch.Tensor, min_size: int = MIN_SIZE) -> None:
    """``x`` must be images of at least ``min_size`` pixels per side with values in [0, 1].

    The message says what the values look like (0–255 floats, normalised) and what to do.
    Reading the range is one device sync on a GPU.
    """
    h, w = x.shape[-2:]
    if h < min_size or w < min_size:
        raise ValueError(
            f"{name} must be images of at least {min_size}x{min_size} pixels (the backbone downsamples by 8; it "
            f"was pretrained at {PRETRAIN_SIZE}x{PRETRAIN_SIZE}), got {h}x{w}: resize them, e.g. with model.preprocess"
        )
    if x.numel() == 0:
        return
    lo, hi = (float(v) for v in torch.aminmax(x.detach()))
    if math.isnan(lo) or math.isnan(hi) or (lo >= -RANGE_TOLERANCE and hi <= 1 + RANGE_TOLERANCE):
        return  # NaN inputs are left to the training loop's NaN check (it says where the loss turned NaN)
    if lo < -RANGE_TOLERANCE:
        hint = ("they look normalised (e.g. with ImageNet's mean and std): pass [0, 1] images, the model "
                "normalises them itself")
    elif hi > 2:
        hint = "they look like 0-255 pixel values: divide by 255 (or use model.preprocess / ToTensor())"
    else:
        hint = "rescale them to [0, 1]"
    raise ValueError(
        f"{name} must hold pixel values in [0, 1], got values in [{lo:.3g}, {hi:.3g}]: {hint}. "
        "(To skip this check: model.backbone.check_inputs = False, or TLCOURSE_CHECK_INPUTS=0.)"
    )


class ImagePreprocess:
    """Image(s) → float tensor in [0, 1] of ``size × size`` pixels with ``channels`` channels.

    Called on one image it returns ``(C, H, W)`` (a dataset transform); :meth:`batch` stacks a
    list into ``(N, C, H, W)``. Accepted images: ``PIL.Image.Image``; ``uint8`` numpy arrays or
    tensors (``H×W``, ``H×W×C`` for numpy, ``C×H×W`` for tensors), scaled by 1/255; float tensors
    ``C×H×W`` already in [0, 1]. Normalisation is *not* done here: the model does it.
    """

    def __init__(self, size: int = PRETRAIN_SIZE, channels: int = 3, min_size: int = MIN_SIZE) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < min_size:
            raise ValueError(f"size must be an int >= {min_size}, got {size!r}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}")
        self.size, self.channels, self.min_size = size, channels, min_size
        self.value_range = (0.0, 1.0)

    def __repr__(self) -> str:
        return (f"ImagePreprocess(size={self.size}, channels={self.channels}, range=[0, 1], "
                f"min_size={self.min_size}, normalisation=inside the model)")

    def _to_tensor(self, image: Any) -> torch.Tensor:
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover - Pillow comes with torchvision
            Image = None
        if Image is not None and isinstance(image, Image.Image):
            image = np.asarray(image.convert("RGB" if self.channels == 3 else "L"))
        if isinstance(image, np.ndarray):
            if image.ndim not in (2, 3):
                raise ValueError(f"image must be H x W or H x W x C, got an array of shape {image.shape}")
            t = torch.from_numpy(np.array(image, copy=True))
            t = t[None] if t.ndim == 2 else t.permute(2, 0, 1)
        elif isinstance(image, torch.Tensor):
            if image.ndim not in (2, 3):
                raise ValueError(f"image must be H x W or C x H x W, got a tensor of shape {tuple(image.shape)}")
            t = image[None] if image.ndim == 2 else image
        else:
            raise TypeError(f"image must be a PIL image, a numpy array or a tensor, got {type(image).__name__}")
        if t.dtype == torch.uint8:
            t = t.float() / 255.0
        elif not t.is_floating_point():
            raise TypeError(f"image must be uint8 (0-255) or float in [0, 1], got {t.dtype}")
        return t.float()

    def __call__(self, image: Any) -> torch.Tensor:
        t = self._to_tensor(image)
        if t.shape[0] not in (1, 3, 4):
            raise ValueError(f"image must have 1, 3 or 4 channels, got {t.shape[0]}")
        t = t[:3]
        if self.channels == 3 and t.shape[0] == 1:
            t = t.expand(3, -1, -1)
        elif self.channels == 1 and t.shape[0] == 3:
            t = (t * torch.tensor([0.299, 0.587, 0.114])[:, None, None]).sum(0, keepdim=True)
        if tuple(t.shape[-2:]) != (self.size, self.size):
            t = F.interpolate(t[None], size=(self.size, self.size), mode="bilinear", antialias=True,
                              align_corners=False)[0].clamp(0, 1)
        check_image_batch("image", t, self.min_size)
        return t.contiguous()

    def batch(self, images: Sequence[Any]) -> torch.Tensor:
        """``(N, C, size, size)``: every image of ``images`` preprocessed and stacked."""
        if len(images) == 0:
            raise ValueError("images is empty: expected at least one image")
        return torch.stack([self(im) for im in images])

    def describe(self) -> dict[str, Any]:
        """The contract as a dict (what the model card states)."""
        return {"input_range": [0.0, 1.0], "input_size": [self.size, self.size], "min_size": [self.min_size] * 2,
                "channels": "1 or 3 (grey is repeated)", "normalisation": "inside the model (do not normalise)"}


def preprocessing(name: str = "glyphs-resnet") -> ImagePreprocess:
    """The preprocessing of a shipped backbone (``tlcourse.models.PRETRAINED``), as ``weights.transforms()``."""
    from tlcourse.models.pretrained import model_card

    card = model_card(name)
    contract = card.get("input", {})
    size = contract.get("input_size", [PRETRAIN_SIZE])[0]
    minimum = contract.get("min_size", [MIN_SIZE])[0]
    return ImagePreprocess(size=int(size), channels=3, min_size=int(minimum))
