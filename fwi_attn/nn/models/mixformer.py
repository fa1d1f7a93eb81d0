"""U-MixFormer: the UNet's encoder with a mix-attention decoder.

Yeom, von Klitzing, "U-MixFormer: UNet-like Transformer with Mix-Attention for Efficient
Semantic Segmentation", arXiv:2312.06272; the decoder as the official head
(julian-klitzing/u-mixformer, ``umixformer_head.py``) builds it.

Data flow, for ``depth=3`` and width ``w`` (the encoder is :class:`~fwi_attn.nn.models.UNet`'s,
built by the same :meth:`~fwi_attn.nn.models.encoder.GridNet.build_encoder`;
level ``l`` has ``C_l = w * 2**l`` channels)::

    gathers -> TimeStem -> pad -> encoder levels 0..depth-1, bottleneck (level depth): E_0..E_depth
    decoder stage for level l = depth, depth-1, ..., 1 (coarse to fine):
        queries = E_l (the stage's lateral encoder feature, C_l channels)
        keys/values = [E_m for m <= l] + [D_m for m > l], every one average-pooled to one
                      common grid (at most mix_pool x mix_pool), through its own 1x1 conv,
                      concatenated along channels: sum_m C_m channels per key
        D_l = MixAttention(queries, keys/values)     (attention, then Mix-FFN), C_l channels
    upsample every D_l to level 1, concatenate (sum_{l>=1} C_l channels), 1x1 conv + ReLU to D = 2w
    upsample to level 0, concatenate with E_0, 1x1 conv + ReLU to D, 1x1 conv head, crop
                                                          [B, 1, nz, nx]

So each stage mixes what the encoder saw at every scale with what the earlier (coarser) decoder
stages made of it: the encoder features of the levels already decoded are replaced by their
decoder outputs, as in the official head. Heads per stage: ``C_l // 32`` (at least one), the
official head's 32 channels per head.

Where this differs from the official head, and why:

* No stage queries level 0 (the stem's full resolution). The paper's decoder stages sit on its
  encoder's stages at 1/4 to 1/32 of the image and its head upsamples; here level 0 enters
  every stage's keys and values, pooled, and joins the fused output through a ``1x1`` conv
  before the head, for the detail a velocity model needs at salt boundaries. A level-0 stage
  would cost more than the whole rest of the network (``H W`` tokens through attention,
  LayerNorms and the Mix-FFN).
* The common grid is at most ``mix_pool x mix_pool``; the official head pools to the coarsest
  encoder stage's grid, which is what ``mix_pool >= H / 2**depth`` gives (8 at 64 x 64 cells and
  ``depth=3``). A smaller ``mix_pool`` pools further, for the CPU budget.
* The fuse conv has no BatchNorm (the official ``linear_fuse`` has): it would cancel constant
  offsets of the finest stage's output, so that stage's Mix-FFN output bias would get no gradient.
* The query and value projections have biases (:class:`~fwi_attn.nn.layers.TokenAttention`'s;
  the official ``qkv_bias`` is False), there is no drop path, and weights keep PyTorch's
  default initialisation instead of the official truncated normal.

An earlier version of this network concatenated the pooled sources as *tokens* at a common
width with a plain FFN; its training step cost 1.5-2.7x the plain UNet's against this one's
1.3-1.6x at the default study's sizes (docs/benchmarks.md), so it was removed.

Salt heads (``salt_heads=True``) sit on every ``D_l``. Modules are indexed by level
(``decoder.1`` is the finest stage); ``decoder.0`` and ``salt_heads.0`` are parameter-free
placeholders, so that a map's name still gives its level.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..layers.mix import MixAttention
from .encoder import GridNet, check_sizes
from .unet import salt_head

#: Channels per attention head, as the official head's stages (e.g. 256 / 8, 160 / 5, 64 / 2).
HEAD_DIM = 32


def mix_heads(channels: int) -> int:
    """Heads for a stage of ``channels``: ``channels // 32``, at least one, a divisor of ``channels``."""
    heads = max(1, channels // HEAD_DIM)
    while channels % heads:
        heads -= 1
    return heads


class UMixFormer(GridNet):
    """Gathers-to-velocity network: UNet encoder, U-MixFormer decoder.

    Args:
        in_shots, nt, n_receivers: input gathers ``[B, in_shots, nt, n_receivers]``.
        nz, nx: output model size, cells.
        width: channels of the first encoder level (level ``i`` has ``width * 2**i``); the
            fused decoder output has ``D = 2 * width``.
        depth: number of poolings.
        mix_pool: the key/value sources are average-pooled to one common grid of at most
            ``mix_pool x mix_pool`` (never larger than the bottleneck's grid).
        salt_heads: a salt head on every decoder stage's output (levels 1..depth).

    Shapes:
        ``[B, in_shots, nt, n_receivers]`` -> ``[B, 1, nz, nx]``; with ``salt=True`` also
        ``depth`` salt logits ``[B, 1, nz, nx]``, coarse to fine (empty without salt heads).
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
        chans = self.build_encoder(in_shots, nt, nz, nx, width, depth)
        dim = 2 * width
        # Indexed by level, as the UNet's decoder: "decoder.1" is the finest stage, the last to run.
        # Every stage's sources are levels 0..depth (encoder or decoded), C_0..C_depth channels.
        self.decoder = nn.ModuleList([nn.Identity()] + [
            MixAttention(c, chans, num_heads=mix_heads(c), pool=mix_pool) for c in chans[1:]])
        self.salt_heads = nn.ModuleList([salt_head(chans[0], False)] + [salt_head(c, salt_heads) for c in chans[1:]])
        self.fuse = nn.Sequential(nn.Conv2d(sum(chans[1:]), dim, 1), nn.ReLU(inplace=True))
        self.full = nn.Sequential(nn.Conv2d(dim + chans[0], dim, 1), nn.ReLU(inplace=True))
        self.head = nn.Conv2d(dim, 1, 1)

    def forward(self, x: torch.Tensor, salt: bool = False):
        """``[B, in_shots, nt, n_receivers]`` -> ``[B, 1, nz, nx]`` (and the salt logits if ``salt``)."""
        feats = self._encode(x)
        decoded: dict[int, torch.Tensor] = {}
        salt_logits = []
        for level in reversed(range(1, len(feats))):
            sources = feats[: level + 1] + [decoded[m] for m in range(level + 1, len(feats))]
            decoded[level] = self.decoder[level](feats[level], sources)
            salt_logits.append(self.salt_heads[level](decoded[level]))
        half, full = feats[1].shape[-2:], feats[0].shape[-2:]
        up = [decoded[1]] + [F.interpolate(decoded[m], size=half, mode="bilinear", align_corners=False)
                             for m in range(2, len(feats))]
        fused = F.interpolate(self.fuse(torch.cat(up, dim=1)), size=full, mode="bilinear", align_corners=False)
        y = self._crop(self.head(self.full(torch.cat([fused, feats[0]], dim=1))))
        return self._with_salt(y, salt_logits, salt)
