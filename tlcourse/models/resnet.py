"""A small ResNet for 28×28 images (any size from 8×8): the course's vision backbone.

The network is split into a ``backbone`` (image → feature vector) and a ``head`` (feature
vector → class scores), the two parts every transfer recipe treats differently. The backbone
takes 1- or 3-channel images in [0, 1]; grey images are repeated to three channels and
normalised inside the model, so callers never have to remember the statistics.

Residual blocks follow He et al. (2016); sizes are chosen to train in seconds on a laptop CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tlcourse.checks import check_int, check_tensor
from tlcourse.models.transforms import PRETRAIN_SIZE, ImagePreprocess, check_image_batch, input_checks_enabled

__all__ = ["BasicBlock", "Backbone", "SmallResNet", "replace_head", "BLOCK_NAMES", "check_class_names"]

#: Names of the backbone's stages, from the input upwards (used by freezing recipes).
BLOCK_NAMES: tuple[str, ...] = ("stem", "layer1", "layer2", "layer3")


class BasicBlock(nn.Module):
    """Two 3×3 convolutions with batch norm and an identity (or 1×1 projection) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm2d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Backbone(nn.Module):
    """Image ``(N, 1 or 3, H, W)`` in [0, 1] → feature vector ``(N, feature_dim)``.

    Stages: ``stem`` (3×3 conv and 2×2 max-pooling: 28×28 → 14×14), ``layer1`` (14×14),
    ``layer2`` (7×7) and ``layer3`` (4×4), then global average pooling.

    The input contract (:mod:`tlcourse.models.transforms`): values in [0, 1] (not 0–255, not
    normalised: the backbone normalises), at least 8×8 pixels, pretrained at 28×28. A batch
    that breaks it raises ``ValueError`` (``check_inputs = False`` turns the check off; on a GPU
    only the first batch is checked, as reading the range waits for the device).
    """

    #: Check each input's range and size (see :func:`tlcourse.models.transforms.check_image_batch`).
    check_inputs: bool = True
    _inputs_checked_on_device: bool = False

    def __init__(self, widths: Sequence[int] = (32, 64, 128), in_channels: int = 3) -> None:
        super().__init__()
        if len(widths) != 3 or any(int(w) < 1 for w in widths):
            raise ValueError(f"widths must be three positive ints, got {tuple(widths)}")
        check_int("in_channels", in_channels, minimum=1)
        w1, w2, w3 = (int(w) for w in widths)
        self.widths = (w1, w2, w3)
        self.in_channels = in_channels
        # Per-channel statistics of the pretraining images (fixed, saved with the weights).
        self.register_buffer("mean", torch.full((1, in_channels, 1, 1), 0.5))
        self.register_buffer("std", torch.full((1, in_channels, 1, 1), 0.25))
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, w1, 3, 1, 1, bias=False), nn.BatchNorm2d(w1), nn.ReLU(inplace=True), nn.MaxPool2d(2)
        )
        self.layer1 = BasicBlock(w1, w1)
        self.layer2 = BasicBlock(w1, w2, stride=2)
        self.layer3 = BasicBlock(w2, w3, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.feature_dim = w3

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Check the input, repeat grey images to ``in_channels`` and normalise."""
        check_tensor("x", x, ndim=4, dtype="float")
        if x.shape[1] != self.in_channels:
            if x.shape[1] == 1:
                x = x.expand(-1, self.in_channels, -1, -1)
            else:
                raise ValueError(f"x must have 1 or {self.in_channels} channels, got shape {tuple(x.shape)}")
        if self.check_inputs and not self._inputs_checked_on_device and input_checks_enabled():
            if not torch.compiler.is_compiling() and x.device.type != "meta":
                check_image_batch("x", x)
                if x.device.type != "cpu":  # one sync, then trust the pipeline
                    self._inputs_checked_on_device = True
        # channels-last memory makes these small convolutions 1.3-1.6x faster on a CPU (and is
        # the layout tensor cores prefer); the weights stay in the default layout.
        return ((x - self.mean) / self.std).contiguous(memory_format=torch.channels_last)

    def forward_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The feature maps of every stage (for plots and layer-wise probes)."""
        maps = {}
        x = self.prepare(x)
        for name in BLOCK_NAMES:
            x = getattr(self, name)(x)
            maps[name] = x
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prepare(x)
        x = self.layer3(self.layer2(self.layer1(self.stem(x))))
        return self.pool(x).flatten(1)


class SmallResNet(nn.Module):
    """``head(backbone(x))``: a small ResNet classifier for 28×28 images.

    Args:
        num_classes: number of output classes (size of the head).
        widths: channels of the three residual stages.
        in_channels: channels the backbone is built for (1-channel input is repeated).
        class_names: the name of each output (``class_names[i]`` for logit ``i``); read by
            :func:`tlcourse.train.predict_names` and saved with :func:`tlcourse.checkpoint.save_weights`.

    ``model.preprocess`` is the :class:`~tlcourse.models.transforms.ImagePreprocess` that turns
    PIL images (or uint8 arrays) into the input this model expects.
    """

    def __init__(self, num_classes: int, widths: Sequence[int] = (32, 64, 128), in_channels: int = 3,
                 class_names: Sequence[str] | None = None) -> None:
        super().__init__()
        check_int("num_classes", num_classes, minimum=1)
        self.backbone = Backbone(widths, in_channels)
        self.head = nn.Linear(self.backbone.feature_dim, num_classes)
        self.class_names: list[str] | None = check_class_names(class_names, num_classes)

    @property
    def preprocess(self) -> ImagePreprocess:
        """PIL image / uint8 array → the ``[0, 1]``, 28×28 input this model expects (no normalisation)."""
        return ImagePreprocess(PRETRAIN_SIZE, channels=3)

    @property
    def feature_dim(self) -> int:
        return self.backbone.feature_dim

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def check_class_names(class_names: Sequence[str] | None, num_classes: int) -> list[str] | None:
    """``class_names`` must be ``num_classes`` distinct strings (or ``None``); returned as a list."""
    if class_names is None:
        return None
    if isinstance(class_names, str) or not isinstance(class_names, Sequence):
        raise TypeError(f"class_names must be a list of strings, got {type(class_names).__name__}")
    names = list(class_names)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"class_names must hold strings, got {[type(n).__name__ for n in names]}")
    if len(names) != num_classes:
        raise ValueError(f"class_names must name each of the {num_classes} outputs, got {len(names)} names")
    if len(set(names)) != len(names):
        raise ValueError(f"class_names must be distinct, got {names}")
    return names


def replace_head(model: nn.Module, num_classes: int, seed: int | None = None,
                 class_names: Sequence[str] | None = None) -> nn.Module:
    """Give ``model`` a fresh linear head with ``num_classes`` outputs (in place; returned).

    ``model.class_names`` becomes ``class_names`` (the old head's names no longer apply).

    Works for any model with a ``head`` (course models) or ``fc`` (torchvision ResNets) linear
    layer. This is step one of every fine-tuning recipe: the source task's classifier is thrown
    away, the features are kept.
    """
    check_int("num_classes", num_classes, minimum=1)
    for attr in ("head", "fc", "classifier"):
        old = getattr(model, attr, None)
        if isinstance(old, nn.Linear):
            if seed is not None:
                torch.manual_seed(seed)
            new = nn.Linear(old.in_features, num_classes).to(old.weight.device, old.weight.dtype)
            setattr(model, attr, new)
            model.class_names = check_class_names(class_names, num_classes)
            return model
    raise ValueError("model must have a linear layer named 'head', 'fc' or 'classifier' to replace")
