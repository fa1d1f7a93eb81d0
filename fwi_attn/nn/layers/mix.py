"""U-MixFormer's mix-attention: lateral queries, keys and values mixed from several stages.

Yeom, von Klitzing, "U-MixFormer: UNet-like Transformer with Mix-Attention for Efficient
Semantic Segmentation", arXiv:2312.06272.

One decoder stage: the queries are the stage's lateral encoder feature (one token per
position); the keys and values are the *mix* of features from other stages (encoder features
and the outputs of earlier decoder stages), each average-pooled to at most ``pool x pool`` and
the tokens concatenated, so the cost is ``HW x (sources * pool^2)`` instead of ``(HW)^2``.
Pre-LayerNorm on queries and on the mix, multi-head attention, residual; then pre-LayerNorm,
a two-layer feed-forward network (GELU), residual. The network around it
(:class:`~fwi_attn.nn.models.UMixFormer`) decides which features form the mix.

The probe receives where the stage draws its keys from: the attention each key receives,
averaged over heads and queries, put back on its source's pooled grid, resampled to the query
grid and summed over sources, divided by its maximum, ``[B, 1, H, W]`` in [0, 1].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .probe import AttnProbe
from .tokens import TokenAttention


class MixAttention(nn.Module):
    """Mix-attention stage: queries from one feature map, keys/values pooled from several.

    Args:
        dim: ``D``, channels of every input (the decoder's common width), divisible by ``num_heads``.
        num_heads: attention heads.
        mlp_ratio: hidden width of the feed-forward network, in units of ``D``.
        pool: the pooled key/value size per source (``pool x pool`` tokens at most).

    Shapes:
        query ``[B, D, H, W]``, sources a list of ``[B, D, h_s, w_s]`` -> ``[B, D, H, W]``;
        probe ``[B, 1, H, W]``.
    """

    def __init__(self, dim: int, num_heads: int = 4, mlp_ratio: float = 4.0, pool: int = 8) -> None:
        super().__init__()
        if pool < 1:
            raise ValueError(f"pool must be >= 1, got {pool}")
        self.pool = pool
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = TokenAttention(dim, num_heads)
        self.norm_ffn = nn.LayerNorm(dim)
        hidden = max(1, round(dim * mlp_ratio))
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))
        self.probe = AttnProbe()

    def pooled(self, sources: list[torch.Tensor]) -> tuple[torch.Tensor, list[tuple[int, int]]]:
        """The mix: ``[B, sum_s h'_s w'_s, D]`` tokens and each source's pooled ``(h', w')``."""
        tokens, grids = [], []
        for s in sources:
            grid = (min(self.pool, s.shape[-2]), min(self.pool, s.shape[-1]))
            p = s if tuple(s.shape[-2:]) == grid else F.adaptive_avg_pool2d(s, grid)
            tokens.append(p.flatten(2).transpose(1, 2))
            grids.append(grid)
        return torch.cat(tokens, dim=1), grids

    def forward(self, query: torch.Tensor, sources: list[torch.Tensor]) -> torch.Tensor:
        b, d, h, w = query.shape
        q = query.flatten(2).transpose(1, 2)  # [B, HW, D]
        kv, grids = self.pooled(sources)
        q_n, kv_n = self.norm_q(q), self.norm_kv(kv)
        if self.probe.active:
            self.probe(self._received(self.attn.weights(q_n, kv_n), grids, (h, w)))
        t = q + self.attn(q_n, kv_n, kv_n)
        t = t + self.ffn(self.norm_ffn(t))
        return t.transpose(1, 2).reshape(b, d, h, w)

    @staticmethod
    def _received(weights: torch.Tensor, grids: list[tuple[int, int]], size: tuple[int, int]) -> torch.Tensor:
        received = weights.mean((1, 2))  # [B, Nk]
        total = 0
        for part, grid in zip(received.split([gh * gw for gh, gw in grids], dim=1), grids):
            total = total + F.interpolate(part.view(-1, 1, *grid), size=size, mode="bilinear", align_corners=False)
        return total / total.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
