"""Shared pieces of the token-attention modules: 2-D sine positions and a multi-head attention.

:func:`sine_positions` is DETR's ``PositionEmbeddingSine`` (Carion et al., arXiv:2005.12872),
as Mask2Former uses it on pixel features (``normalize=True``, temperature 10000, scale
``2*pi``): half the channels encode the row, half the column, each as interleaved sines and
cosines of geometric frequencies. It has no parameters and any grid size, so it follows the
feature map through every resolution of a UNet.

:class:`TokenAttention` is ``nn.MultiheadAttention`` reduced to what these modules need, on
:func:`torch.nn.functional.scaled_dot_product_attention`: separate query, key and value
projections (queries and keys may carry positions that values must not), no key bias (the
softmax cancels it, so it would get no gradient), no dropout.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def sine_positions(h: int, w: int, dim: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """2-D sine positional encoding of an ``h x w`` grid with ``dim`` channels.

    Row and column coordinates are normalised to ``(0, 2*pi]``; channels ``[0, dim//2)`` encode
    the row, the next ``dim//2`` the column (each half as ``sin, cos`` pairs of frequencies
    ``1 / 10000**(2k / half)``); an odd last channel is zero.

    Shapes:
        returns ``[h * w, dim]`` (row-major positions, as ``x.flatten(2).transpose(1, 2)``).
    """
    if dim < 2:
        raise ValueError(f"sine positions need dim >= 2, got {dim}")
    half = dim // 2
    eps, scale = 1e-6, 2 * math.pi
    ys = torch.arange(1, h + 1, device=device, dtype=torch.float32) / (h + eps) * scale
    xs = torch.arange(1, w + 1, device=device, dtype=torch.float32) / (w + eps) * scale
    k = torch.arange(half, device=device, dtype=torch.float32)
    freq = 10000.0 ** (2 * torch.div(k, 2, rounding_mode="floor") / half)

    def encode(coord: torch.Tensor) -> torch.Tensor:  # [n] -> [n, half]
        angles = coord[:, None] / freq
        return torch.where(k.long() % 2 == 0, angles.sin(), angles.cos())

    pos_y = encode(ys)[:, None, :].expand(h, w, half)
    pos_x = encode(xs)[None, :, :].expand(h, w, half)
    pos = torch.cat([pos_y, pos_x], dim=-1).reshape(h * w, 2 * half)
    if dim > 2 * half:
        pos = F.pad(pos, (0, dim - 2 * half))
    return pos.to(dtype)


class TokenAttention(nn.Module):
    """Multi-head attention ``softmax(Q K^T / sqrt(d)) V`` between token sets.

    Args:
        dim: token width ``D`` (divisible by ``num_heads``).
        num_heads: heads.
        kv_dim: width of the key/value tokens (default ``D``).

    Shapes:
        query ``[B, Nq, D]``, key and value ``[B, Nk, kv_dim]``, mask (optional) boolean
        ``[B, 1, Nq or 1, Nk]`` (True: may attend) -> ``[B, Nq, D]``.
    """

    def __init__(self, dim: int, num_heads: int = 4, kv_dim: int | None = None) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        kv_dim = dim if kv_dim is None else kv_dim
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(kv_dim, dim, bias=False)
        self.v = nn.Linear(kv_dim, dim)
        self.out = nn.Linear(dim, dim)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        b, n, d = t.shape
        return t.view(b, n, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = self._heads(self.q(query)), self._heads(self.k(key)), self._heads(self.v(value))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        b, _, n, _ = out.shape
        return self.out(out.transpose(1, 2).reshape(b, n, -1))

    def weights(self, query: torch.Tensor, key: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The attention weights ``[B, heads, Nq, Nk]`` (rows sum to one) that :meth:`forward` uses.

        Formed explicitly, so only for figures (attention capture), not in training.
        """
        q, k = self._heads(self.q(query)), self._heads(self.k(key))
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        return scores.softmax(-1)
