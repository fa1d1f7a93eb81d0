"""Mask attention: multi-head self-attention over positions, restricted by a learned mask.

Cheng et al., "MaskAttn-UNet: A Mask Attention-Driven Framework for Universal Low-Resolution
Image Segmentation", arXiv:2503.10686 (mask attention in the spirit of Mask2Former,
arXiv:2112.01527).

A 1x1 conv head predicts one mask logit per position; every attention score towards key ``j``
receives ``log(sigmoid(logit_j))``, so keys the mask rejects are down-weighted smoothly and the
mask is trained by the task loss. With ``hard=True`` the forward pass uses a 0 / -1e4 mask at
``threshold`` while the gradient is that of the soft mask (straight-through). Then residual,
LayerNorm, a two-layer feed-forward network, residual, LayerNorm (post-norm, as the original
Transformer and Mask2Former's decoder).

Positions: attention over a set of tokens is blind to where they lie, so with ``pos="sine"``
(the default) queries and keys (not values) receive the 2-D sine encoding of
:func:`~fwi_attn.nn.layers.tokens.sine_positions` times a learnable gain ``pos_scale``
(initially 1), as DETR and Mask2Former add it to their pixel features. ``pos="none"`` drops it.

Cost grows with ``(H*W)^2``: use it only on coarse feature maps. The probe receives the mask
probabilities ``sigmoid(logits)``, ``[B, 1, H, W]``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .probe import AttnProbe
from .tokens import sine_positions

# Finite, so a query whose keys are all rejected gets a uniform softmax instead of NaN.
_REJECT = -1.0e4


class MaskAttention(nn.Module):
    """Masked multi-head self-attention block with a learnable mask.

    Args:
        channels: ``C``, divisible by ``num_heads``.
        num_heads: attention heads (4 in MaskAttn-UNet).
        mlp_ratio: hidden width of the feed-forward network, in units of ``C``.
        hard: harden the mask with a straight-through threshold.
        threshold: probability above which a key is kept when ``hard``.
        pos: ``"sine"`` (2-D sine positions on queries and keys, with a learnable gain) or ``"none"``.

    Shapes:
        x ``[B, C, H, W]`` -> ``[B, C, H, W]``; mask logits ``[B, 1, H, W]``; attention bias
        ``[B, 1, 1, H*W]`` (one value per key, shared by heads and queries).
    """

    def __init__(
        self,
        channels: int,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        hard: bool = False,
        threshold: float = 0.5,
        pos: str = "sine",
    ) -> None:
        super().__init__()
        if channels % num_heads != 0:
            raise ValueError(f"channels ({channels}) must be divisible by num_heads ({num_heads})")
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold is a probability in (0, 1), got {threshold}")
        if pos not in ("sine", "none"):
            raise ValueError(f"pos must be 'sine' or 'none', got {pos!r}")
        self.num_heads = num_heads
        self.hard = hard
        # A parameter, not a constant: a checkpoint saved without positions then refuses to load
        # (missing key) instead of running with positions it never saw.
        self.pos_scale = nn.Parameter(torch.ones(1)) if pos == "sine" else None
        self.threshold_logit = math.log(threshold / (1.0 - threshold))
        self.mask_head = nn.Conv2d(channels, 1, 1)
        # Query and value biases only (as BEiT and timm): a key bias adds q.b_k to every score of
        # a query, which the softmax cancels, so it would be a parameter with no gradient.
        self.qkv = nn.Linear(channels, 3 * channels, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(channels))
        self.v_bias = nn.Parameter(torch.zeros(channels))
        self.proj = nn.Linear(channels, channels)
        self.norm1 = nn.LayerNorm(channels)
        hidden = max(1, round(channels * mlp_ratio))
        self.ffn = nn.Sequential(nn.Linear(channels, hidden), nn.GELU(), nn.Linear(hidden, channels))
        self.norm2 = nn.LayerNorm(channels)
        self.probe = AttnProbe()

    def key_bias(self, logits: torch.Tensor) -> torch.Tensor:
        """Additive attention bias per key from mask logits (any shape, same shape out)."""
        soft = F.logsigmoid(logits)
        if not self.hard:
            return soft
        hard = torch.where(logits > self.threshold_logit, 0.0, _REJECT).to(soft.dtype)
        return soft + (hard - soft).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = h * w
        logits = self.mask_head(x)
        if self.probe.active:
            self.probe(torch.sigmoid(logits))
        tokens = x.flatten(2).transpose(1, 2)  # [B, N, C]
        heads = (b, n, self.num_heads, c // self.num_heads)
        w_qk, w_v = self.qkv.weight.split([2 * c, c])
        qk_in = tokens
        if self.pos_scale is not None:
            qk_in = tokens + self.pos_scale * sine_positions(h, w, c, device=x.device, dtype=tokens.dtype)
        qk_bias = torch.cat([self.q_bias, torch.zeros_like(self.q_bias)])
        q, k = F.linear(qk_in, w_qk, qk_bias).view(b, n, 2, *heads[2:]).permute(2, 0, 3, 1, 4)
        v = F.linear(tokens, w_v, self.v_bias).view(heads).transpose(1, 2)
        # SDPA wants the mask in the query's dtype (bf16 under autocast).
        bias = self.key_bias(logits.view(b, 1, 1, n)).to(q.dtype)
        attn = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # [B, heads, N, C/heads]
        tokens = self.norm1(tokens + self.proj(attn.transpose(1, 2).reshape(b, n, c)))
        tokens = self.norm2(tokens + self.ffn(tokens))
        return tokens.transpose(1, 2).reshape(b, c, h, w)
