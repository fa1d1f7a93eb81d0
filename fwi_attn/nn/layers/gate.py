"""Additive attention gate on a UNet skip connection.

Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas", arXiv:1804.03999.

``alpha = sigmoid(psi(relu(W_x skip + W_g g + b_g)) + b_psi)`` with 1x1 convs ``W_x``, ``W_g``,
``psi``, where ``g`` is the coarser decoder feature; the decoder then concatenates
``alpha * skip``. ``W_g`` is applied at ``g``'s own resolution and the result resampled
bilinearly to the skip's size: a 1x1 conv and bilinear interpolation (weights summing to one)
commute, so this equals resampling ``g`` first, at a quarter of the cost.
``alpha`` goes through the probe.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .probe import AttnProbe


class AttentionGate(nn.Module):
    """Attention gate (two inputs, so it is not in the single-input ``create_attn`` registry).

    Args:
        channels: ``C``, channels of the skip.
        gate_channels: channels of ``g`` (default ``C``).
        inter_channels: width of the additive attention (default ``max(1, C // 2)``).

    Shapes:
        skip ``[B, C, H, W]``, g ``[B, C_g, H_g, W_g]`` -> ``alpha * skip`` ``[B, C, H, W]``;
        probe ``alpha [B, 1, H, W]``.
    """

    def __init__(self, channels: int, gate_channels: int | None = None, inter_channels: int | None = None) -> None:
        super().__init__()
        gate_channels = channels if gate_channels is None else gate_channels
        inter = max(1, channels // 2) if inter_channels is None else inter_channels
        # One bias (b_g) before the ReLU is enough; W_x's would duplicate it.
        self.w_x = nn.Conv2d(channels, inter, 1, bias=False)
        self.w_g = nn.Conv2d(gate_channels, inter, 1)
        self.psi = nn.Conv2d(inter, 1, 1)
        self.probe = AttnProbe()

    def forward(self, skip: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        gated = self.w_g(g)
        if gated.shape[-2:] != skip.shape[-2:]:
            gated = F.interpolate(gated, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        alpha = torch.sigmoid(self.psi(F.relu(self.w_x(skip) + gated)))
        return skip * self.probe(alpha)


class SkipPassthrough(nn.Module):
    """The "no gate" twin of :class:`AttentionGate`: returns the skip unchanged.

    Shapes:
        skip ``[B, C, H, W]``, g (ignored) -> skip.
    """

    def forward(self, skip: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return skip
