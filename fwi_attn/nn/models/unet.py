"""UNet with attention hook points, fed by a stem that squeezes the time axis of the gathers.

Data flow, shapes for the default ``depth=3`` and width ``w``::

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
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import AttentionGate, SkipPassthrough, create_attn, list_attn

ATTN_POINTS = ("encoder", "bottleneck", "decoder")


class ConvBNReLU(nn.Sequential):
    """Conv (no bias: BatchNorm follows) + BatchNorm + ReLU. ``[B, C_in, H, W] -> [B, C_out, H', W']``."""

    def __init__(self, c_in: int, c_out: int, kernel_size=3, stride=1, padding=1) -> None:
        super().__init__(
            nn.Conv2d(c_in, c_out, kernel_size, stride, padding, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """Two 3x3 ConvBNReLU, the UNet stage. ``[B, C_in, H, W] -> [B, C_out, H, W]``."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__(ConvBNReLU(c_in, c_out), ConvBNReLU(c_out, c_out))


class TimeStem(nn.Module):
    """Squeeze the time axis of the gathers and resample onto the model grid.

    ``n = floor(log2(nt / nz))`` halvings bring ``nt`` down to ``ceil(nt / 2**n)``, no fewer than
    ``nz`` samples, so the final bilinear resampling to ``[nz, nx]`` at most halves the time axis.
    The first conv takes up to two halvings at once (``9 x 1``, stride 4; ``7 x 1``, stride 2 when
    ``n = 1``, as OpenFWI's InversionNet), each further one is a ``3 x 1`` stride-2 conv. Shot
    gathers are oversampled in time (2 ms for a 12 Hz source: Nyquist 250 Hz), so striding by 4
    at once loses nothing, and it skips a BatchNorm and ReLU over the largest activation in the
    network, which made the stem ~15% of a training step on CPU (docs/benchmarks.md). With
    ``nt <= 2 * nz`` one unstrided ``7 x 1`` conv is used.

    Shapes:
        ``[B, in_shots, nt, n_receivers]`` -> ``[B, width, nz, nx]``.
    """

    def __init__(self, in_shots: int, nt: int, nz: int, nx: int, width: int) -> None:
        super().__init__()
        n_down = max(0, math.floor(math.log2(nt / nz)))
        first = min(n_down, 2)
        kernel = 9 if first == 2 else 7
        layers = [ConvBNReLU(in_shots, width, (kernel, 1), (2**first, 1), (kernel // 2, 0))]
        layers += [ConvBNReLU(width, width, (3, 1), (2, 1), (1, 0)) for _ in range(n_down - first)]
        self.convs = nn.Sequential(*layers)
        self.size = (nz, nx)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.convs(x), size=self.size, mode="bilinear", align_corners=False)


class EncoderStage(nn.Module):
    """DoubleConv then attention. ``[B, C_in, H, W] -> [B, C_out, H, W]``."""

    def __init__(self, c_in: int, c_out: int, attn: nn.Module) -> None:
        super().__init__()
        self.conv = DoubleConv(c_in, c_out)
        self.attn = attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(self.conv(x))


class DecoderStage(nn.Module):
    """Up-conv, gate the skip, concatenate, attention, DoubleConv.

    Shapes:
        x ``[B, 2C, H/2, W/2]``, skip ``[B, C, H, W]`` -> ``[B, C, H, W]``; the attention sees
        ``[B, 2C, H, W]``.
    """

    def __init__(self, c_out: int, attn: nn.Module, gate: nn.Module) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(2 * c_out, c_out, 2, stride=2)
        self.gate = gate
        self.attn = attn
        self.conv = DoubleConv(2 * c_out, c_out)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        skip = self.gate(skip, x)
        return self.conv(self.attn(torch.cat([self.up(x), skip], dim=1)))


class UNet(nn.Module):
    """Gathers-to-velocity UNet with attention at configurable hook points.

    Args:
        in_shots, nt, n_receivers: input gathers ``[B, in_shots, nt, n_receivers]``.
        nz, nx: output model size, cells.
        width: channels of the first level (level ``i`` has ``width * 2**i``).
        depth: number of poolings; the bottleneck is at ``1 / 2**depth`` resolution.
        attn: a :func:`~fwi_attn.nn.layers.list_attn` name used at every enabled hook point.
        attn_points: subset of ``("encoder", "bottleneck", "decoder")`` (the registry's attention
            variants use ``("bottleneck", "decoder")``).
        attn_kwargs: passed to :func:`~fwi_attn.nn.layers.create_attn` (e.g. ``{"reduction": 8}``).
        gates: attention gates (Oktay et al.) on the skip connections.
        attn_levels: attention only at the ``attn_levels`` coarsest levels (the bottleneck is
            level ``depth``; None: all). Mask attention costs ``(H*W)^2`` and uses 2: the
            bottleneck and the lowest decoder level.

    Shapes:
        ``[B, in_shots, nt, n_receivers]`` -> ``[B, 1, nz, nx]`` (normalised velocity, linear head).
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
    ) -> None:
        super().__init__()
        for key, value in dict(in_shots=in_shots, nt=nt, n_receivers=n_receivers, nz=nz, nx=nx,
                               width=width, depth=depth).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"UNet: {key} must be a positive integer, got {value!r}")
        attn_points = tuple(attn_points)
        bad = [p for p in attn_points if p not in ATTN_POINTS]
        if bad:
            raise ValueError(f"UNet: unknown attn_points {bad}; valid: {', '.join(ATTN_POINTS)}")
        if attn not in list_attn():
            raise ValueError(f"UNet: unknown attn {attn!r}; valid: {', '.join(list_attn())}")
        if attn_levels is not None and attn_levels < 1:
            raise ValueError(f"UNet: attn_levels must be >= 1 or None, got {attn_levels}")
        attn_kwargs = dict(attn_kwargs or {})
        self.config = dict(
            in_shots=in_shots, nt=nt, n_receivers=n_receivers, nz=nz, nx=nx, width=width, depth=depth,
            attn=attn, attn_points=attn_points, attn_kwargs=attn_kwargs, gates=gates, attn_levels=attn_levels,
        )
        lowest = 0 if attn_levels is None else depth + 1 - attn_levels

        def hook(point: str, level: int, channels: int) -> nn.Module:
            on = point in attn_points and level >= lowest
            return create_attn(attn if on else "none", channels, **attn_kwargs)

        chans = [width * 2**i for i in range(depth + 1)]
        self.stem = TimeStem(in_shots, nt, nz, nx, width)
        self.encoder = nn.ModuleList(
            EncoderStage(chans[max(i - 1, 0)], chans[i], hook("encoder", i, chans[i])) for i in range(depth)
        )
        self.bottleneck = EncoderStage(chans[depth - 1], chans[depth], hook("bottleneck", depth, chans[depth]))
        # Indexed by level, so a map captured at "decoder.2.attn" is level 2 in any variant.
        self.decoder = nn.ModuleList(
            DecoderStage(
                chans[i],
                hook("decoder", i, 2 * chans[i]),
                AttentionGate(chans[i], chans[i + 1]) if gates else SkipPassthrough(),
            )
            for i in range(depth)
        )
        self.head = nn.Conv2d(width, 1, 1)
        multiple = 2**depth
        pad_z, pad_x = -nz % multiple, -nx % multiple
        # F.pad order: (left, right, top, bottom); centred so both borders see the same padding.
        self.pad = (pad_x // 2, pad_x - pad_x // 2, pad_z // 2, pad_z - pad_z // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, in_shots, nt, n_receivers]`` -> ``[B, 1, nz, nx]``."""
        expected = (self.config["in_shots"], self.config["nt"], self.config["n_receivers"])
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"UNet expects gathers [B, {', '.join(map(str, expected))}], got {list(x.shape)}")
        x = self.stem(x)
        if any(self.pad):
            x = F.pad(x, self.pad, mode="replicate")
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for stage, skip in zip(reversed(self.decoder), reversed(skips)):
            x = stage(x, skip)
        x = self.head(x)
        return self._crop(x)

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        left, _, top, _ = self.pad
        return x[..., top : top + self.config["nz"], left : left + self.config["nx"]]

    def maps_on_model_grid(self, maps: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Bring maps from :func:`~fwi_attn.nn.layers.capture_attention` onto the velocity grid.

        A map captured at level ``i`` covers the padded grid at ``1 / 2**i`` resolution; it is
        upsampled bilinearly to the padded grid and the padding cropped away.

        Shapes:
            each ``[B, 1, Hp / 2**i, Wp / 2**i]`` -> ``[B, 1, nz, nx]``.
        """
        left, right, top, bottom = self.pad
        full = (self.config["nz"] + top + bottom, self.config["nx"] + left + right)
        return {
            key: self._crop(F.interpolate(m, size=full, mode="bilinear", align_corners=False))
            for key, m in maps.items()
        }
