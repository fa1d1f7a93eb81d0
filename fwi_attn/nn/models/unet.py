"""UNet with attention hook points, fed by a stem that squeezes the time axis of the gathers.

Data flow, shapes for the default ``depth=3`` and width ``w`` (stem, encoder and bottleneck:
:mod:`fwi_attn.nn.models.encoder`, shared with U-MixFormer)::

    gathers [B, S, T, R]           shots are channels
      stem: (k x 1, stride 2 x 1) convs along time, then bilinear resampling
            [B, w, nz, nx]
      replicate-pad to a multiple of 2**depth  [B, w, Hp, Wp]
      encoder level i = 0..depth-1: DoubleConv -> attn ("encoder") -> skip_i, maxpool
      bottleneck (level depth):     DoubleConv -> attn ("bottleneck")
      decoder level i = depth-1..0: up-conv, gate(skip_i, g), concat -> attn ("decoder") -> DoubleConv
      1x1 conv head, crop              [B, 1, nz, nx]

Channels at level ``i`` are ``w * 2**i``; decoder attention sees the concatenation,
``2 * w * 2**i`` channels (segmentation_models_pytorch's ``attention1`` position).

Every hook point holds a module: ``create_attn("none")`` is ``nn.Identity`` and the "no gate"
is :class:`~fwi_attn.nn.layers.SkipPassthrough`, so ``forward`` never branches on the variant.

The head is linear (no Tanh): targets live on OpenFWI's [-1, 1] scale and salt, the fastest
rock, sits at +1, where a Tanh would need an infinite pre-activation and its gradient vanishes.
Predictions may leave [-1, 1] slightly; clamp them when converting to m/s.

Salt heads (``salt_heads=True``, and always with ``attn="m2f"``): a ``1x1`` conv to one salt logit
at the bottleneck and after each decoder stage; ``model(x, salt=True)`` returns them too, coarse to
fine and resampled onto the velocity grid, for the auxiliary salt loss of
:mod:`fwi_attn.learn.losses`. With ``attn="m2f"`` the decoder levels hold
:class:`~fwi_attn.nn.layers.MaskedQueryAttention` (after the skip concatenation): level ``i``
attends within the salt that the head of level ``i + 1`` predicted, and the learnable queries
(:class:`~fwi_attn.nn.layers.SaltQueries`) pass from level to level, coarse to fine.
"""
from __future__ import annotations

import torch
from torch import nn

from ..layers import (
    AttentionGate,
    AttnProbe,
    MaskedQueryAttention,
    NoQueries,
    QueryPassthrough,
    SaltQueries,
    SkipPassthrough,
    create_attn,
    list_attn,
)
from .encoder import DoubleConv, GridNet, check_sizes

ATTN_POINTS = ("encoder", "bottleneck", "decoder")
#: Attention that is not a single-input hook module: Mask2Former's salt-guided masked attention.
GUIDED_ATTN = ("m2f",)


class NoSalt(nn.Module):
    """The "no salt head" twin of a salt head: ``x -> None``."""

    def forward(self, x: torch.Tensor) -> None:
        return None


class SaltHead(nn.Conv2d):
    """A ``1x1`` conv ``[B, C, H, W] -> [B, 1, H, W]`` salt logits.

    Its probe receives the predicted salt probability ``sigmoid(logits)``, ``[B, 1, H, W]``, so
    :func:`~fwi_attn.nn.layers.capture_attention` records it as ``salt_heads.<level>`` beside the
    attention maps (for m2f: the prediction that the next finer level's mask is cut from). The
    probe has no parameters: the state dict is that of the plain conv.
    """

    def __init__(self, channels: int) -> None:
        super().__init__(channels, 1, 1)
        self.probe = AttnProbe()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = super().forward(x)
        if self.probe.active:
            self.probe(torch.sigmoid(logits))
        return logits


def salt_head(channels: int, on: bool) -> nn.Module:
    """A :class:`SaltHead` on ``channels`` features, or :class:`NoSalt`."""
    return SaltHead(channels) if on else NoSalt()


class DecoderStage(nn.Module):
    """Up-conv, gate the skip, concatenate, guided attention, attention, DoubleConv.

    ``guide`` is :class:`~fwi_attn.nn.layers.MaskedQueryAttention` (m2f) or its passthrough twin;
    it sees the coarser level's salt logits and the queries, and hands the queries on.

    Shapes:
        x ``[B, 2C, H/2, W/2]``, skip ``[B, C, H, W]``, salt_logits ``[B, 1, H/2, W/2]`` or None,
        queries (or None) -> ``([B, C, H, W], queries)``; the attention sees ``[B, 2C, H, W]``.
    """

    def __init__(self, c_out: int, attn: nn.Module, gate: nn.Module, guide: nn.Module | None = None) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(2 * c_out, c_out, 2, stride=2)
        self.gate = gate
        self.guide = QueryPassthrough() if guide is None else guide
        self.attn = attn
        self.conv = DoubleConv(2 * c_out, c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor, salt_logits=None, queries=None):
        skip = self.gate(skip, x)
        h, queries = self.guide(torch.cat([self.up(x), skip], dim=1), salt_logits, queries)
        return self.conv(self.attn(h)), queries


class UNet(GridNet):
    """Gathers-to-velocity UNet with attention at configurable hook points.

    Args:
        in_shots, nt, n_receivers: input gathers ``[B, in_shots, nt, n_receivers]``.
        nz, nx: output model size, cells.
        width: channels of the first level (level ``i`` has ``width * 2**i``).
        depth: number of poolings; the bottleneck is at ``1 / 2**depth`` resolution.
        attn: a :func:`~fwi_attn.nn.layers.list_attn` name used at every enabled hook point, or
            ``"m2f"``: salt-guided masked attention at the enabled decoder levels (those with a
            coarser salt head to follow).
        attn_points: subset of ``("encoder", "bottleneck", "decoder")`` (the registry's attention
            variants use ``("bottleneck", "decoder")``).
        attn_kwargs: passed to :func:`~fwi_attn.nn.layers.create_attn` (e.g. ``{"reduction": 8}``).
        gates: attention gates (Oktay et al.) on the skip connections.
        attn_levels: attention only at the ``attn_levels`` coarsest levels (the bottleneck is
            level ``depth``; None: all). Mask attention costs ``(H*W)^2`` and uses 2: the
            bottleneck and the lowest decoder level.
        salt_heads: a salt head at the bottleneck and after each decoder stage (implied by m2f).
        num_queries: m2f's learnable queries (width ``2 * width``, 4 heads).
        salt_band: cells by which m2f dilates the predicted salt before attending within it.

    Shapes:
        ``[B, in_shots, nt, n_receivers]`` -> ``[B, 1, nz, nx]`` (normalised velocity, linear head);
        with ``salt=True`` also a list of ``depth + 1`` salt logits ``[B, 1, nz, nx]``, coarse to
        fine (empty without salt heads).
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
        attn: str = "none",
        attn_points: tuple[str, ...] | list[str] = ATTN_POINTS,
        attn_kwargs: dict | None = None,
        gates: bool = False,
        attn_levels: int | None = None,
        salt_heads: bool = False,
        num_queries: int = 8,
        salt_band: int = 1,
    ) -> None:
        super().__init__()
        check_sizes("UNet", in_shots=in_shots, nt=nt, n_receivers=n_receivers, nz=nz, nx=nx, width=width,
                    depth=depth, num_queries=num_queries)
        attn_points = tuple(attn_points)
        bad = [p for p in attn_points if p not in ATTN_POINTS]
        if bad:
            raise ValueError(f"UNet: unknown attn_points {bad}; valid: {', '.join(ATTN_POINTS)}")
        if attn not in list_attn() + list(GUIDED_ATTN):
            raise ValueError(f"UNet: unknown attn {attn!r}; valid: {', '.join(list_attn() + list(GUIDED_ATTN))}")
        if attn_levels is not None and attn_levels < 1:
            raise ValueError(f"UNet: attn_levels must be >= 1 or None, got {attn_levels}")
        if not isinstance(salt_band, int) or salt_band < 0:
            raise ValueError(f"UNet: salt_band must be an integer >= 0 cells, got {salt_band!r}")
        attn_kwargs = dict(attn_kwargs or {})
        self.config = dict(
            in_shots=in_shots, nt=nt, n_receivers=n_receivers, nz=nz, nx=nx, width=width, depth=depth,
            attn=attn, attn_points=attn_points, attn_kwargs=attn_kwargs, gates=gates, attn_levels=attn_levels,
            salt_heads=salt_heads, num_queries=num_queries, salt_band=salt_band,
        )
        guided = attn in GUIDED_ATTN
        #: True when the salt heads steer attention, so they must be trained (the auxiliary loss).
        self.needs_salt_supervision = guided
        lowest = 0 if attn_levels is None else depth + 1 - attn_levels

        def hook(point: str, level: int, channels: int) -> nn.Module:
            on = point in attn_points and level >= lowest and not guided
            return create_attn(attn if on else "none", channels, **attn_kwargs)

        chans = self.build_encoder(in_shots, nt, nz, nx, width, depth, hook)
        query_dim = 2 * width

        def guide(level: int) -> nn.Module | None:
            if guided and "decoder" in attn_points and level >= lowest:
                return MaskedQueryAttention(2 * chans[level], query_dim, band=salt_band, **attn_kwargs)
            return None

        # Indexed by level, so a map captured at "decoder.2.attn" is level 2 in any variant.
        self.decoder = nn.ModuleList(
            DecoderStage(
                chans[i],
                hook("decoder", i, 2 * chans[i]),
                AttentionGate(chans[i], chans[i + 1]) if gates else SkipPassthrough(),
                guide(i),
            )
            for i in range(depth)
        )
        self.queries = SaltQueries(num_queries, query_dim) if guided else NoQueries()
        # Indexed by level too: salt_heads[depth] is the bottleneck's.
        self.salt_heads = nn.ModuleList(salt_head(chans[i], salt_heads or guided) for i in range(depth + 1))
        self.head = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor, salt: bool = False):
        """``[B, in_shots, nt, n_receivers]`` -> ``[B, 1, nz, nx]`` (and the salt logits if ``salt``)."""
        *skips, x = self._encode(x)
        queries = self.queries(x)
        salt_logits = [self.salt_heads[-1](x)]
        for level in reversed(range(len(self.decoder))):
            x, queries = self.decoder[level](x, skips[level], salt_logits[-1], queries)
            salt_logits.append(self.salt_heads[level](x))
        return self._with_salt(self._crop(self.head(x)), salt_logits, salt)
