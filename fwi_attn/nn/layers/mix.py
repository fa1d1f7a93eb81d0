"""U-MixFormer's mix-attention: lateral queries, keys and values mixed from several stages.

Yeom, von Klitzing, "U-MixFormer: UNet-like Transformer with Mix-Attention for Efficient
Semantic Segmentation", arXiv:2312.06272; as the official decode head
(julian-klitzing/u-mixformer, ``umixformer_head.py``) builds it.

One decoder stage (:class:`MixAttention`): the queries are the stage's lateral encoder feature,
one token per position, at that feature's own width ``D``. The keys and values are the *mix* of
``S`` source feature maps (encoder features and the outputs of earlier decoder stages): every
source is average-pooled to one common grid ``g_h x g_w`` (at most ``pool x pool``, never larger
than the smallest source), passed through its own ``1x1`` conv, and the sources are concatenated
along *channels*, so there are ``g_h g_w`` key tokens, each ``C = sum_s C_s`` wide, and the
cost is ``HW x g_h g_w`` instead of ``(HW)^2``. Then, as the official block does: LayerNorm on
the queries, LayerNorm and GELU on the mix, multi-head attention with the key/value projections
taking the ``C`` channels to ``D``, the residual added to the normalised queries; LayerNorm, a
:class:`MixFFN` and its residual. The network around it (:class:`~fwi_attn.nn.models.UMixFormer`)
decides which features form the mix.

:class:`MixFFN` is SegFormer's Mix-FFN (Xie et al., arXiv:2105.15203), which U-MixFormer's
blocks use: linear, ``3 x 3`` depthwise conv on the token grid, GELU, linear. The depthwise conv
gives each token its ``3 x 3`` neighbourhood (SegFormer's substitute for positional encodings).

The probe receives where the stage draws its keys from: the attention each key receives,
averaged over heads and queries, on the common grid, resampled bilinearly to the query grid and
divided by its maximum, ``[B, 1, H, W]`` in [0, 1].
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .probe import AttnProbe
from .tokens import TokenAttention


class MixFFN(nn.Module):
    """Mix-FFN: ``Linear(D, hidden)``, ``3 x 3`` depthwise conv, GELU, ``Linear(hidden, D)``.

    Args:
        dim: token width ``D``.
        hidden: hidden width (U-MixFormer: ``4 D``).

    Shapes:
        tokens ``[B, H*W, D]`` (row-major positions, as ``x.flatten(2).transpose(1, 2)``) and
        the grid ``(H, W)`` -> ``[B, H*W, D]``.
    """

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        b, n, _ = x.shape
        t = self.fc1(x)
        t = self.dwconv(t.transpose(1, 2).reshape(b, -1, *size)).flatten(2).transpose(1, 2)
        return self.fc2(self.act(t))


class MixAttention(nn.Module):
    """Mix-attention stage: queries from one feature map, keys/values from several, concatenated
    along channels on one pooled grid.

    Args:
        dim: ``D``, channels of the query feature map (and of the output), divisible by ``num_heads``.
        source_dims: ``C_s``, channels of each key/value source, in the order they are passed.
        num_heads: attention heads.
        mlp_ratio: hidden width of the Mix-FFN, in units of ``D``.
        pool: the common key/value grid is at most ``pool x pool`` (and no larger than the
            smallest source).

    Shapes:
        query ``[B, D, H, W]``, sources a list of ``[B, C_s, h_s, w_s]`` -> ``[B, D, H, W]``;
        probe ``[B, 1, H, W]``.
    """

    def __init__(self, dim: int, source_dims: Sequence[int], num_heads: int = 1, mlp_ratio: float = 4.0,
                 pool: int = 8) -> None:
        super().__init__()
        if pool < 1:
            raise ValueError(f"pool must be >= 1, got {pool}")
        if not source_dims:
            raise ValueError("mix-attention needs at least one key/value source")
        self.pool = pool
        self.source_dims = tuple(source_dims)
        mix_dim = sum(self.source_dims)
        # One 1x1 conv per source after pooling (the official head's "sr" convs).
        self.reduce = nn.ModuleList(nn.Conv2d(c, c, 1) for c in self.source_dims)
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(mix_dim)
        self.act_kv = nn.GELU()
        self.attn = TokenAttention(dim, num_heads, kv_dim=mix_dim)
        self.norm_ffn = nn.LayerNorm(dim)
        self.ffn = MixFFN(dim, max(1, round(dim * mlp_ratio)))
        self.probe = AttnProbe()

    def grid(self, sources: list[torch.Tensor]) -> tuple[int, int]:
        """The common pooled grid ``(g_h, g_w)``: ``pool`` capped by the smallest source."""
        return (min(self.pool, *(s.shape[-2] for s in sources)), min(self.pool, *(s.shape[-1] for s in sources)))

    def mix(self, sources: list[torch.Tensor]) -> tuple[torch.Tensor, tuple[int, int]]:
        """The mix: ``[B, g_h g_w, sum_s C_s]`` key/value tokens and the grid ``(g_h, g_w)``.

        Channels ``[sum_{r<s} C_r, sum_{r<=s} C_r)`` of every token are source ``s``, pooled and
        through its ``1x1`` conv.
        """
        if len(sources) != len(self.source_dims):
            raise ValueError(f"expected {len(self.source_dims)} sources, got {len(sources)}")
        grid = self.grid(sources)
        pooled = [conv(s if tuple(s.shape[-2:]) == grid else F.adaptive_avg_pool2d(s, grid))
                  for conv, s in zip(self.reduce, sources)]
        return torch.cat(pooled, dim=1).flatten(2).transpose(1, 2), grid

    def forward(self, query: torch.Tensor, sources: list[torch.Tensor]) -> torch.Tensor:
        b, d, h, w = query.shape
        kv, grid = self.mix(sources)
        q = self.norm_q(query.flatten(2).transpose(1, 2))  # [B, HW, D]
        kv = self.act_kv(self.norm_kv(kv))
        if self.probe.active:
            self.probe(self._received(self.attn.weights(q, kv), grid, (h, w)))
        t = self.norm_ffn(q + self.attn(q, kv, kv))
        t = t + self.ffn(t, (h, w))
        return t.transpose(1, 2).reshape(b, d, h, w)

    @staticmethod
    def _received(weights: torch.Tensor, grid: tuple[int, int], size: tuple[int, int]) -> torch.Tensor:
        received = weights.mean((1, 2)).view(-1, 1, *grid)  # [B, 1, g_h, g_w]
        up = F.interpolate(received, size=size, mode="bilinear", align_corners=False)
        return up / up.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1, 1)
