"""Small networks for the adaptation chapter: the LeNet-style digit net and a domain discriminator.

:class:`LeNet` follows the MNIST architecture of Ganin et al. (2016): two 5×5
convolutions (32 and 48 channels) with max pooling, then fully connected layers (here one
feature layer and a linear head). As in every
course model it is split into a ``backbone`` (image → feature vector, the representation that
adaptation aligns) and a linear ``head`` (feature vector → class scores). Batch normalisation
after each layer lets a model keep one set of normalisation statistics per domain
(:mod:`tlcourse.adapt.adabn`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from tlcourse.checks import check_int, check_tensor

__all__ = ["LeNetBackbone", "LeNet", "DomainDiscriminator"]


class LeNetBackbone(nn.Module):
    """Image ``(N, 1 or 3, 28, 28)`` in [0, 1] → feature vector ``(N, feature_dim)``."""

    def __init__(self, in_channels: int = 3, feature_dim: int = 128, widths: Sequence[int] = (32, 48)) -> None:
        super().__init__()
        self.in_channels = check_int("in_channels", in_channels, minimum=1)
        self.feature_dim = check_int("feature_dim", feature_dim, minimum=1)
        if len(widths) != 2 or any(int(w) < 1 for w in widths):
            raise ValueError(f"widths must be two positive ints, got {tuple(widths)}")
        w1, w2 = (int(w) for w in widths)
        # Pooling before normalisation and ReLU (which commute with max-pooling up to BN's sign)
        # gives the same kind of network as conv → BN → ReLU → pool at a quarter of the BN/ReLU cost.
        self.conv = nn.Sequential(
            nn.Conv2d(in_channels, w1, 5), nn.MaxPool2d(2), nn.BatchNorm2d(w1), nn.ReLU(inplace=True),
            nn.Conv2d(w1, w2, 5), nn.MaxPool2d(2), nn.BatchNorm2d(w2), nn.ReLU(inplace=True),
        )
        # channels-last memory makes these small convolutions about 1.3× faster on a CPU
        self.conv.to(memory_format=torch.channels_last)
        self.fc = nn.Sequential(nn.Linear(w2 * 16, feature_dim), nn.BatchNorm1d(feature_dim), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, ndim=4, dtype="float")
        if x.shape[-2:] != (28, 28):
            raise ValueError(f"x must hold 28×28 images, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            if x.shape[1] != 1:
                raise ValueError(f"x must have 1 or {self.in_channels} channels, got shape {tuple(x.shape)}")
            x = x.expand(-1, self.in_channels, -1, -1)
        x = (x - 0.5).contiguous(memory_format=torch.channels_last)
        return self.fc(self.conv(x).flatten(1))


class LeNet(nn.Module):
    """``head(backbone(x))``: the LeNet-style digit classifier of Ganin et al. (2016).

    Args:
        num_classes: number of classes.
        in_channels: channels the first convolution expects (1-channel input is repeated).
        feature_dim: size of the feature vector the head (and any adaptation loss) sees.
        widths: channels of the two convolutions (Ganin et al.: 32 and 48; narrower is faster).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, feature_dim: int = 128,
                 widths: Sequence[int] = (32, 48)) -> None:
        super().__init__()
        check_int("num_classes", num_classes, minimum=1)
        self.backbone = LeNetBackbone(in_channels, feature_dim, widths)
        self.head = nn.Linear(feature_dim, num_classes)

    @property
    def feature_dim(self) -> int:
        return self.backbone.feature_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class DomainDiscriminator(nn.Sequential):
    """MLP ``features → one logit`` (source = 1, target = 0), the adversary of DANN and ADDA.

    Args:
        in_features: size of the feature vectors it judges.
        hidden: sizes of the hidden layers (Ganin et al. use one layer of 100 units for digits).
    """

    def __init__(self, in_features: int, hidden: Sequence[int] = (100,)) -> None:
        check_int("in_features", in_features, minimum=1)
        layers: list[nn.Module] = []
        width = in_features
        for h in hidden:
            h = check_int("hidden", h, minimum=1)
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        layers.append(nn.Linear(width, 1))
        super().__init__(*layers)
        self.in_features = in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        check_tensor("features", x, ndim=2, dtype="float")
        if x.shape[1] != self.in_features:
            raise ValueError(f"features must have {self.in_features} columns, got shape {tuple(x.shape)}")
        return super().forward(x).squeeze(1)
