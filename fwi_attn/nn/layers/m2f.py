"""Mask2Former-style masked attention, guided by the salt the coarser UNet level predicted.

Cheng, Misra, Schwing, Kirillov, Girdhar, "Masked-attention Mask Transformer for Universal Image
Segmentation" (Mask2Former), arXiv:2112.01527.

Mask2Former's decoder layer, as here: learnable queries ``q`` with learnable positional
embeddings ``q_pos`` (:class:`SaltQueries`) attend to the pixel features of one scale
(``1x1`` input projection to ``D`` channels, plus 2-D sine positions on the keys) *only inside
the foreground of the mask predicted by the previous layer*, binarised at 0.5 and resized to the
scale; where that mask is empty the layer attends everywhere. Masked cross-attention comes
before self-attention among the queries, then a feed-forward network, each with residual and
post-LayerNorm, no dropout; the scales are visited coarse to fine, one per layer, the queries
carried from layer to layer.

Adapted to gathers-to-velocity, in a UNet decoder (:class:`~fwi_attn.nn.models.UNet` with
``attn="m2f"``):

* the "mask the previous layer predicted" is salt: every decoder level (and the bottleneck) has a
  salt head (``1x1`` conv to one logit) trained against the true salt mask (velocity above
  ``evaluate.salt_threshold``) by the auxiliary loss of :mod:`fwi_attn.learn.losses`; the
  masked attention at level ``i`` uses the head of level ``i + 1``, the coarser one, upsampled
  bilinearly (logits) and thresholded at logit 0 (probability 0.5), then dilated by ``band``
  cells (:func:`salt_attention_mask`): the salt *boundary*, where the velocity jumps, is what the
  pixels near it need to see, and a predicted outline is off by about a cell at the coarse
  level. The mask is computed from a prediction, never drawn and never from the same layer's
  input: it does not pass gradient (it is binary), so only the auxiliary loss trains the heads;
* one class (salt), so every query shares the one mask of its sample; an empty predicted mask
  (no salt predicted) is replaced per sample by "everywhere";
* Mask2Former reads its queries out as per-query masks; a velocity model needs pixels, so after
  its layer the pixel tokens attend to the updated queries (``HW x N``, unmasked) and the result,
  projected back to ``C`` channels, is added to the level's features before its DoubleConv.

Design choice: queries decode, rather than masked attention acting on pixels directly. The
alternative, pixel-to-pixel attention whose keys are restricted to the predicted salt (the
``mask`` module with its key mask taken from the coarser level), costs ``(HW)^2`` per level
against ``N * HW`` here (``N`` queries, 8 by default): on the default study's 64 x 64 grid
(depth 3) the decoder levels have 256, 1,024 and 4,096 pixels, so pixel attention would have to
stay at the two coarsest levels, as ``mask`` does, leaving a single masked level instead of a
coarse-to-fine sweep. Counted by :func:`fwi_attn.nn.models.count_macs` on that grid with
``attn_levels: 3``, MACs per sample: at the default study's width 8, ``none`` 40 M, ``m2f`` 44 M,
``mask`` (pixel attention at two levels) 65 M; at width 16, 156 M, 170 M and 237 M. Measured at
width 16 (``benchmarks/bench_models.py``, docs/benchmarks.md: batch 16, one CPU thread, forward +
backward, m2f with its salt loss): ``m2f`` 1.34x ``none``'s step time in fp32 and 1.58x in
bf16 + channels_last, ``mask`` 1.62x and 1.96x. Whether m2f's accuracy differs
from the other mask designs' or the plain UNet's is the study's to say (its report's corrected
comparisons, ``docs/study.md``); no study so far has confirmed a difference either way.

The probe receives the mask the cross-attention used (1: attended, 0: excluded; all ones where
the predicted mask was empty), ``[B, 1, H, W]``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .probe import AttnProbe
from .tokens import TokenAttention, sine_positions


def salt_attention_mask(salt_logits: torch.Tensor, size: tuple[int, int], band: int = 1) -> torch.Tensor:
    """Where a masked attention at ``size`` may look, from a coarser level's salt logits.

    Args:
        salt_logits: ``[B, 1, h, w]`` logits of the coarser level's salt head.
        size: ``(H, W)`` of the attending level.
        band: cells of dilation at ``size`` (0: the predicted salt only).

    Returns:
        Boolean ``[B, 1, H, W]``: predicted salt (probability above 0.5 after bilinear
        resampling of the logits) plus ``band``; all True for a sample with no predicted salt.
    """
    if band < 0:
        raise ValueError(f"band must be >= 0 cells, got {band}")
    logits = salt_logits.detach().float()
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
    fg = logits > 0.0
    if band:
        fg = F.max_pool2d(fg.float(), 2 * band + 1, stride=1, padding=band) > 0
    empty = ~fg.flatten(1).any(1)
    return fg | empty.view(-1, 1, 1, 1)


class SaltQueries(nn.Module):
    """Mask2Former's learnable queries: content features and positional embeddings.

    Shapes:
        x ``[B, ...]`` (only its batch size is read) -> ``(q [B, N, D], q_pos [B, N, D])``.
    """

    def __init__(self, num_queries: int, dim: int) -> None:
        super().__init__()
        if num_queries < 1:
            raise ValueError(f"num_queries must be >= 1, got {num_queries}")
        self.features = nn.Parameter(torch.randn(num_queries, dim) * dim**-0.5)
        self.pos = nn.Parameter(torch.randn(num_queries, dim) * dim**-0.5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Copies, not the parameters or views of them: module hooks (FLOP counting) expect
        # outputs that autograd produced, which a view made under no_grad is not.
        b = x.shape[0]
        return self.features.unsqueeze(0).repeat(b, 1, 1), self.pos.unsqueeze(0).repeat(b, 1, 1)


class MaskedQueryAttention(nn.Module):
    """One Mask2Former layer at one UNet decoder level, and its read-out into the pixels.

    Args:
        channels: ``C`` of the level's features.
        dim: query width ``D`` (shared by every level), divisible by ``num_heads``.
        num_heads: attention heads.
        mlp_ratio: hidden width of the queries' feed-forward network, in units of ``D``
            (Mask2Former: 2048 / 256 = 8).
        band: cells of dilation of the predicted salt (:func:`salt_attention_mask`).

    Shapes:
        x ``[B, C, H, W]``, salt_logits ``[B, 1, h, w]`` (the coarser level's), queries
        ``(q [B, N, D], q_pos [B, N, D])`` -> ``(x' [B, C, H, W], (q' [B, N, D], q_pos))``;
        probe: the attended mask ``[B, 1, H, W]``.
    """

    def __init__(self, channels: int, dim: int, num_heads: int = 4, mlp_ratio: float = 8.0, band: int = 1) -> None:
        super().__init__()
        if band < 0:
            raise ValueError(f"band must be >= 0 cells, got {band}")
        self.band = band
        self.input_proj = nn.Conv2d(channels, dim, 1)
        self.cross = TokenAttention(dim, num_heads)
        self.norm_cross = nn.LayerNorm(dim)
        self.self_attn = TokenAttention(dim, num_heads)
        self.norm_self = nn.LayerNorm(dim)
        hidden = max(1, round(dim * mlp_ratio))
        self.ffn = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dim))
        self.norm_ffn = nn.LayerNorm(dim)
        self.readout = TokenAttention(dim, num_heads)
        self.out_proj = nn.Linear(dim, channels)
        self.probe = AttnProbe()

    def forward(self, x: torch.Tensor, salt_logits: torch.Tensor,
                queries: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        b, c, h, w = x.shape
        q, q_pos = queries
        allowed = salt_attention_mask(salt_logits, (h, w), self.band)
        if self.probe.active:
            self.probe(allowed.float())
        memory = self.input_proj(x).flatten(2).transpose(1, 2)  # [B, HW, D]
        pos = sine_positions(h, w, memory.shape[-1], device=x.device, dtype=memory.dtype)
        keys = memory + pos
        q = q.to(memory.dtype)
        q_pos = q_pos.to(memory.dtype)
        q = self.norm_cross(q + self.cross(q + q_pos, keys, memory, mask=allowed.view(b, 1, 1, h * w)))
        qk = q + q_pos
        q = self.norm_self(q + self.self_attn(qk, qk, q))
        q = self.norm_ffn(q + self.ffn(q))
        read = self.readout(keys, q + q_pos, q)  # every pixel reads the queries: [B, HW, D]
        x = x + self.out_proj(read).transpose(1, 2).reshape(b, c, h, w)
        return x, (q, queries[1])


class QueryPassthrough(nn.Module):
    """The "no masked attention" twin of :class:`MaskedQueryAttention`: returns its inputs.

    Shapes:
        x, salt_logits (ignored), queries -> ``(x, queries)``.
    """

    def forward(self, x: torch.Tensor, salt_logits, queries):
        return x, queries


class NoQueries(nn.Module):
    """The "no queries" twin of :class:`SaltQueries`: ``x -> None``."""

    def forward(self, x: torch.Tensor) -> None:
        return None
