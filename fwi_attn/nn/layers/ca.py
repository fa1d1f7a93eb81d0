"""Coordinate Attention.

Hou, Zhou, Feng, "Coordinate Attention for Efficient Mobile Network Design", arXiv:2103.02907.

Average-pool along the width (``[B, C, H, 1]``) and along the height (``[B, C, 1, W]``),
concatenate along the spatial axis, shared 1x1 conv ``C -> m`` + BatchNorm + h-swish with
``m = max(min_channels, C // reduction)``, split, one 1x1 conv ``m -> C`` per direction,
sigmoid: ``y = x * a_h * a_w``. The probe receives ``mean_c(a_h * a_w)``, ``[B, 1, H, W]``.
"""
from __future__ import annotations

import torch
from torch import nn

from .probe import AttnProbe
from .se import reduced_channels


class CoordAttention(nn.Module):
    """Coordinate attention block (direction-aware channel attention).

    Parameters: ``3*C*m + 2*m + 2*C`` (conv ``C->m`` without bias, as BatchNorm follows it,
    BatchNorm affine, two convs ``m->C`` with bias).

    Args:
        channels: ``C``.
        reduction: ``r``, 32 in the paper.
        min_channels: floor on ``m``, 8 in the paper.

    Shapes:
        x ``[B, C, H, W]`` -> ``[B, C, H, W]``; probe ``[B, 1, H, W]``.
    """

    def __init__(self, channels: int, reduction: int = 32, min_channels: int = 8) -> None:
        super().__init__()
        mid = reduced_channels(channels, reduction, min_channels)
        # No bias: BatchNorm right after subtracts it again.
        self.conv1 = nn.Conv2d(channels, mid, 1, bias=False)
        self.bn = nn.BatchNorm2d(mid)
        self.act = nn.Hardswish()
        self.conv_h = nn.Conv2d(mid, channels, 1)
        self.conv_w = nn.Conv2d(mid, channels, 1)
        self.probe = AttnProbe()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x_h = x.mean(3, keepdim=True)  # [B, C, H, 1]
        x_w = x.mean(2, keepdim=True).transpose(2, 3)  # [B, C, W, 1]
        y = self.act(self.bn(self.conv1(torch.cat([x_h, x_w], dim=2))))
        y_h, y_w = y.split([h, w], dim=2)
        a_h = torch.sigmoid(self.conv_h(y_h))  # [B, C, H, 1]
        a_w = torch.sigmoid(self.conv_w(y_w.transpose(2, 3)))  # [B, C, 1, W]
        if self.probe.active:
            # Only formed when captured: the channel mean costs a pass over [B, C, H, W].
            self.probe(torch.einsum("bch,bcw->bhw", a_h[..., 0], a_w[:, :, 0]).unsqueeze(1) / x.shape[1])
        return x * a_h * a_w
