"""U-MixFormer: the UNet's encoder with a mix-attention decoder.

Yeom, von Klitzing, "U-MixFormer: UNet-like Transformer with Mix-Attention for Efficient
Semantic Segmentation", arXiv:2312.06272.

Data flow, for ``depth=3`` and width ``w`` (encoder as :class:`~fwi_attn.nn.models.UNet`'s)::

    gathers -> TimeStem -> pad -> encoder levels 0..depth-1, bottleneck (level depth): E_0..E_depth
    lateral 1x1 convs: E_l -> E'_l with D = 2w channels
    decoder stage for level l = depth, depth-1, ..., 0 (coarse to fine):
        queries = E'_l (the stage's lateral encoder feature)
        keys/values = [E'_m for m <= l] + [D_m for m > l], each pooled to <= mix_pool x mix_pool
        D_l = MixAttention(queries, keys/values)          (attention, then FFN)
    upsample every D_l to level 0, concatenate ((depth + 1) * D channels), 1x1 conv + ReLU to D,
    1x1 conv head, crop                                   [B, 1, nz, nx]

So each stage mixes what the encoder saw at every scale with what the earlier (coarser) decoder
stages made of it: the encoder features of the levels already decoded are replaced by their
decoder outputs, as in the paper. ``mix_pool`` sets the cost: ``HW_l x (depth + 1) mix_pool^2``
per stage. Salt heads (``salt_heads=True``) sit on every ``D_l``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import MixAttention
from .unet import EncoderStage, GridNet, TimeStem, check_sizes, salt_head


class UMixFormer(GridNet):
    """Gathers-to-velocity network: UNet encoder, U-MixFormer decoder.

    Args:
        in_shots, nt, n_receivers: input gathers ``[B, in_shots, nt, n_receivers]``.
        nz, nx: output model size, cells.
        width: channels of the first encoder level (level ``i`` has ``width * 2**i``); the
            decoder's common width is ``D = 2 * width``.
        depth: number of poolings.
        mix_pool: each key/value source is average-pooled to at most ``mix_pool x mix_pool``.
        salt_heads: a salt head on every decoder stage's output.

    Shapes:
        ``[B, in_shots, nt, n_receivers]`` -> ``[B, 1, nz, nx]``; with ``salt=True`` also
        ``depth + 1`` salt logits ``[B, 1, nz, nx]``, coarse to fine (empty without salt heads).
    """

    def __init__(
        self,
        in_shots: int,
        nt: int,
        n_receivers: int,
        nz: int,
        nx: int,
        width: int = 16,
        depth: int = 3,
        mix_pool: int = 8,
        salt_heads: bool = False,
    ) -> None:
        super().__init__()
        check_sizes("UMixFormer", in_shots=in_shots, nt=nt, n_receivers=n_receivers, nz=nz, nx=nx, width=width,
                    depth=depth, mix_pool=mix_pool)
        self.config = dict(in_shots=in_shots, nt=nt, n_receivers=n_receivers, nz=nz, nx=nx, width=width,
                           depth=depth, mix_pool=mix_pool, salt_heads=salt_heads)
        self.needs_salt_supervision = False
        chans = [width * 2**i for i in range(depth + 1)]
        dim = 2 * width
        self.stem = TimeStem(in_shots, nt, nz, nx, width)
        none = nn.Identity
        self.encoder = nn.ModuleList(EncoderStage(chans[max(i - 1, 0)], chans[i], none()) for i in range(depth))
        self.bottleneck = EncoderStage(chans[depth - 1], chans[depth], none())
        self.lateral = nn.ModuleList(nn.Conv2d(c, dim, 1) for c in chans)
        # Indexed by level, as the UNet's decoder: "decoder.0" is the finest stage, the last to run.
        self.decoder = nn.ModuleList(MixAttention(dim, pool=mix_pool) for _ in chans)
        self.salt_heads = nn.ModuleList(salt_head(dim, salt_heads) for _ in chans)
        # No BatchNorm here: it would cancel the finest stage's constant offsets (its FFN bias
        # would get no gradient), and the stages' outputs come out of residual token blocks anyway.
        self.fuse = nn.Sequential(nn.Conv2d(len(chans) * dim, dim, 1), nn.ReLU(inplace=True))
        self.head = nn.Conv2d(dim, 1, 1)
        self._init_grid(nz, nx, depth)

    def forward(self, x: torch.Tensor, salt: bool = False):
        """``[B, in_shots, nt, n_receivers]`` -> ``[B, 1, nz, nx]`` (and the salt logits if ``salt``)."""
        feats = self._encode(x)
        lateral = [proj(f) for proj, f in zip(self.lateral, feats)]
        decoded: dict[int, torch.Tensor] = {}
        salt_logits = []
        for level in reversed(range(len(feats))):
            sources = lateral[: level + 1] + [decoded[m] for m in range(level + 1, len(feats))]
            decoded[level] = self.decoder[level](lateral[level], sources)
            salt_logits.append(self.salt_heads[level](decoded[level]))
        size = feats[0].shape[-2:]
        up = [decoded[0]] + [F.interpolate(decoded[m], size=size, mode="bilinear", align_corners=False)
                             for m in range(1, len(feats))]
        y = self._crop(self.head(self.fuse(torch.cat(up, dim=1))))
        return self._with_salt(y, salt_logits, salt)
