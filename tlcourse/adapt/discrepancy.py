"""Statistical distances between feature distributions: MMD (DAN) and CORAL (Deep CORAL).

Both are differentiable transfer losses ``(f_s, f_t) → scalar`` for
:func:`tlcourse.adapt.loop.train_adaptation`; neither needs a discriminator.

* **MMD** (Gretton et al., 2012; used for adaptation by Long et al., 2015, DAN). With a kernel
  ``k``, the squared maximum mean discrepancy between samples ``X`` (m rows) and ``Y`` (n rows)
  is estimated by (book Eq. (6.6))

      biased:    MMD²_b = 1/m² Σ_ij k(x_i,x_j) + 1/n² Σ_ij k(y_i,y_j) − 2/(mn) Σ_ij k(x_i,y_j)
      unbiased:  MMD²_u = 1/(m(m−1)) Σ_{i≠j} k(x_i,x_j) + 1/(n(n−1)) Σ_{i≠j} k(y_i,y_j) − 2/(mn) Σ_ij k(x_i,y_j)

  Here ``k`` is the mean of Gaussian kernels ``exp(−‖x−y‖² / (2σ²))`` over several bandwidths
  (DAN's multi-kernel MMD with equal weights). The biased estimate is ≥ 0 but overestimates
  on small samples; the unbiased one averages to the true value (it can dip below 0).

* **CORAL** (Sun & Saenko, 2016): ``‖C_S − C_T‖²_F / (4 d²)`` with ``C`` the feature
  covariance matrices (book Eq. (6.7)) — it aligns second-order statistics only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from tlcourse.checks import check_feature_pair, check_not_constant, check_positive

__all__ = ["gaussian_kernel", "mmd2", "MMDLoss", "covariance", "coral_loss", "CORALLoss", "DEFAULT_SCALES"]

#: Bandwidths, as multiples of the mean squared pairwise distance (σ² = scale · mean ‖x−y‖²).
DEFAULT_SCALES: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0, 2.0)


def _sq_dists(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    # ‖x‖² + ‖y‖² − 2 x·y: unlike cdist, its gradient is finite at zero distance.
    d2 = x.pow(2).sum(1, keepdim=True) + y.pow(2).sum(1) - 2 * x @ y.T
    return d2.clamp_min(0)


def _bandwidth_list(bandwidths: Any) -> list[float] | None:
    """``bandwidths`` as a list of floats: a number, a 0-d/1-d tensor or a sequence of numbers."""
    if bandwidths is None:
        return None
    if isinstance(bandwidths, torch.Tensor):
        if bandwidths.ndim > 1 or bandwidths.is_complex():
            raise ValueError(f"bandwidths must be a number or a 1-D tensor of σ > 0, "
                             f"got shape {tuple(bandwidths.shape)}")
        return [float(b) for b in bandwidths.detach().reshape(-1).tolist()]
    if isinstance(bandwidths, (int, float)) and not isinstance(bandwidths, bool):
        return [float(bandwidths)]
    if isinstance(bandwidths, Sequence) and not isinstance(bandwidths, str):
        return [float(check_positive("bandwidths", b)) for b in bandwidths]
    raise TypeError(f"bandwidths must be a number, a sequence of numbers or a tensor, got {type(bandwidths).__name__}")


def _sigmas2(
    pooled_sq: torch.Tensor, bandwidths: Sequence[float] | None, scales: Sequence[float]
) -> list[torch.Tensor | float]:
    bandwidths = _bandwidth_list(bandwidths)
    if bandwidths is not None:
        if len(bandwidths) == 0:
            raise ValueError("bandwidths must hold at least one σ > 0")
        return [float(check_positive("bandwidths", float(b))) ** 2 for b in bandwidths]
    if len(scales) == 0:
        raise ValueError("scales must hold at least one positive number")
    n = pooled_sq.shape[0]
    mean_sq = pooled_sq.detach().sum() / max(n * n - n, 1)
    mean_sq = torch.clamp(mean_sq, min=1e-12)
    return [float(check_positive("scales", float(s))) * mean_sq for s in scales]


def gaussian_kernel(
    x: torch.Tensor, y: torch.Tensor, bandwidths: Sequence[float] | float = 1.0
) -> torch.Tensor:
    """Mean over ``bandwidths`` σ of ``exp(−‖x_i − y_j‖² / (2σ²))``; shape ``(len(x), len(y))``."""
    check_feature_pair(x, y, ("x", "y"))
    sig2 = _sigmas2(x.new_zeros(1, 1), bandwidths, ())
    d2 = _sq_dists(x, y)
    return torch.stack([torch.exp(-d2 / (2 * s)) for s in sig2]).mean(0)


def mmd2(
    x: torch.Tensor,
    y: torch.Tensor,
    bandwidths: Sequence[float] | None = None,
    unbiased: bool = False,
    scales: Sequence[float] = DEFAULT_SCALES,
) -> torch.Tensor:
    """Squared MMD between the rows of ``x`` and ``y`` with a multi-bandwidth Gaussian kernel.

    Args:
        x, y: ``(m, d)`` and ``(n, d)`` samples.
        bandwidths: kernel widths σ > 0 (a number, a sequence or a tensor); when ``None`` they are set from the data as
            ``σ² = scale · (mean squared distance between all pooled rows)`` for each of ``scales``
            (no gradient flows through this choice).
        unbiased: drop the diagonal terms (U-statistic, needs m, n ≥ 2) instead of the biased
            V-statistic.
    """
    return _mmd2(x, y, bandwidths, unbiased, scales, ("x", "y"))


def _mmd2(x: torch.Tensor, y: torch.Tensor, bandwidths: Any, unbiased: bool, scales: Sequence[float],
          names: tuple[str, str]) -> torch.Tensor:
    check_feature_pair(x, y, names)
    if unbiased and (len(x) < 2 or len(y) < 2):
        raise ValueError(f"the unbiased MMD needs at least 2 rows in x and y, got {len(x)} and {len(y)}")
    m, n = len(x), len(y)
    pooled = torch.cat([x, y])
    d2 = _sq_dists(pooled, pooled)
    sig2 = _sigmas2(d2, bandwidths, scales)
    check_not_constant(f"torch.cat([{names[0]}, {names[1]}])", pooled,
                       "MMD² is 0 by construction and gives no gradient to align")
    k = torch.stack([torch.exp(-d2 / (2 * s)) for s in sig2]).mean(0)
    kxx, kyy, kxy = k[:m, :m], k[m:, m:], k[:m, m:]
    if unbiased:
        sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
        syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    else:
        sxx, syy = kxx.mean(), kyy.mean()
    return sxx + syy - 2 * kxy.mean()


class MMDLoss(nn.Module):
    """Transfer loss ``MMD²(f_s, f_t)`` (DAN, Long et al., 2015); see :func:`mmd2`."""

    def __init__(
        self,
        bandwidths: Sequence[float] | None = None,
        unbiased: bool = False,
        scales: Sequence[float] = DEFAULT_SCALES,
    ) -> None:
        super().__init__()
        found = _bandwidth_list(bandwidths)
        for b in found or ():
            check_positive("bandwidths", b)
        for s in scales:
            check_positive("scales", float(s))
        self.bandwidths = None if found is None else tuple(found)
        self.unbiased = bool(unbiased)
        self.scales = tuple(float(s) for s in scales)

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        return _mmd2(f_s, f_t, self.bandwidths, self.unbiased, self.scales, ("f_s", "f_t"))

    def extra_repr(self) -> str:
        return f"bandwidths={self.bandwidths}, unbiased={self.unbiased}, scales={self.scales}"


def covariance(x: torch.Tensor) -> torch.Tensor:
    """Unbiased feature covariance ``(XᵀX − (1ᵀX)ᵀ(1ᵀX)/n) / (n − 1)`` of an ``(n, d)`` batch."""
    if not isinstance(x, torch.Tensor) or x.ndim != 2:
        raise ValueError(f"x must be a 2-D tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}: use x.float()")
    if len(x) < 2:
        raise ValueError(f"the covariance needs at least 2 rows, got {len(x)}")
    xc = x - x.mean(0, keepdim=True)
    return xc.T @ xc / (len(x) - 1)


def coral_loss(f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
    """Deep CORAL loss ``‖C_S − C_T‖²_F / (4 d²)`` (Sun & Saenko, 2016, Eq. 1; book Eq. (6.7))."""
    check_feature_pair(f_s, f_t)
    if len(f_s) < 2 or len(f_t) < 2:
        raise ValueError(f"CORAL needs at least 2 rows per domain, got {len(f_s)} and {len(f_t)}")
    for name, f in (("f_s", f_s), ("f_t", f_t)):
        check_not_constant(name, f, "its covariance is 0, so CORAL only pulls the other domain's covariance to 0")
    d = f_s.shape[1]
    return (covariance(f_s) - covariance(f_t)).pow(2).sum() / (4 * d * d)


class CORALLoss(nn.Module):
    """Transfer loss :func:`coral_loss` as a module."""

    def forward(self, f_s: torch.Tensor, f_t: torch.Tensor) -> torch.Tensor:
        return coral_loss(f_s, f_t)
