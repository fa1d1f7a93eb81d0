"""Polarized Self-Attention (channel-only and spatial-only branches).

Liu, Xu, Wang, Lin, Tian, "Polarized Self-Attention: Towards High-quality Pixel-wise
Regression", arXiv:2107.00782.

Channel-only branch: ``Wv`` (1x1, ``C -> C/2``), ``Wq`` (1x1, ``C -> 1``) with a softmax over the
``H*W`` positions; their product ``[B, C/2, 1, 1]`` goes through ``Wz`` (1x1, ``C/2 -> C``),
LayerNorm over channels and a sigmoid: ``w_ch [B, C, 1, 1]``.
Spatial-only branch: ``Wq`` (1x1, ``C -> C/2``) then global average pooling and a softmax over
channels; ``Wv`` (1x1, ``C -> C/2``); their product is ``[B, 1, H, W]``, sigmoid: ``w_sp``.
Layouts: parallel ``x * w_ch + x * w_sp`` (default) or sequential ``y = x * w_ch``,
``y * w_sp(y)``. ``w_sp`` goes through the probe.

The 1x1 convs are linear and the softmax weights sum to one, so each ``Wv`` (and the spatial
``Wq``) is applied after the contraction instead of before it: the result is identical and the
branch never materialises a ``[B, C/2, H, W]`` tensor, which keeps PSA cheap at full resolution.
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from .probe import AttnProbe


class PolarizedSelfAttention(nn.Module):
    """Polarized self-attention block.

    Parameters: with ``h = C // 2``: ``Wv_ch`` ``C*h + h``, ``Wq_ch`` ``C`` (no bias: the softmax over
    positions ignores a constant), ``Wz`` ``h*C + C``,
    LayerNorm ``2*C``, ``Wq_sp`` and ``Wv_sp`` ``2*(C*h + h)``.

    Args:
        channels: ``C`` (at least 2).
        layout: ``"parallel"`` or ``"sequential"``.

    Shapes:
        x ``[B, C, H, W]`` -> ``[B, C, H, W]``; probe ``w_sp [B, 1, H, W]``.
    """

    def __init__(self, channels: int, layout: str = "parallel") -> None:
        super().__init__()
        if channels < 2:
            raise ValueError(f"PSA halves the channels, so it needs channels >= 2, got {channels}")
        if layout not in ("parallel", "sequential"):
            raise ValueError(f"layout must be 'parallel' or 'sequential', got {layout!r}")
        half = channels // 2
        self.layout = layout
        # The paper's 1x1 convs. After folding, only Wq_ch touches the full map; the others see
        # pooled [B, C] vectors (or lend their weights to one), where Linear beats a conv kernel.
        self.ch_wv = nn.Linear(channels, half)
        # No bias: the softmax over positions is shift-invariant, so a bias would get no gradient.
        self.ch_wq = nn.Conv2d(channels, 1, 1, bias=False)
        self.ch_wz = nn.Linear(half, channels)
        self.ch_norm = nn.LayerNorm(channels)
        self.sp_wq = nn.Linear(channels, half)
        self.sp_wv = nn.Linear(channels, half)
        self.probe = AttnProbe()

    def channel_weights(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``w_ch [B, C, 1, 1]``."""
        b, c = x.shape[:2]
        attn = torch.softmax(self.ch_wq(x).flatten(2), dim=-1)  # [B, 1, HW]
        # Multiply-and-sum beats bmm here: bmm's backward is a slow rank-1 product on CPU.
        pooled = (x.flatten(2) * attn).sum(-1)  # [B, C]
        z = self.ch_wz(self.ch_wv(pooled))  # == Wz(Wv(x) . softmax(Wq x))
        return torch.sigmoid(self.ch_norm(z)).view(b, c, 1, 1)

    def spatial_weights(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> ``w_sp [B, 1, H, W]``."""
        b, _, h, w = x.shape
        q = torch.softmax(self.sp_wq(x.mean((2, 3))), dim=1)  # [B, C/2]
        # softmax(q)^T Wv(x) folded into one per-sample 1x1 conv C -> 1.
        weight = q @ self.sp_wv.weight  # [B, C]
        bias = q @ self.sp_wv.bias  # [B]
        logits = (x * weight.view(b, -1, 1, 1)).sum(1, keepdim=True) + bias.view(b, 1, 1, 1)
        return torch.sigmoid(logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w_ch = self.channel_weights(x)
        if self.layout == "parallel":
            w_sp = self.probe(self.spatial_weights(x))
            return x * (w_ch + w_sp)
        y = x * w_ch
        return y * self.probe(self.spatial_weights(y))


psa_parallel = functools.partial(PolarizedSelfAttention, layout="parallel")
psa_sequential = functools.partial(PolarizedSelfAttention, layout="sequential")
