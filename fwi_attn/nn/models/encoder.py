"""The encoder that the UNet and U-MixFormer share, and the grid handling around it.

:meth:`GridNet.build_encoder` builds it into a network as three attributes, so that both
networks' state-dict keys are ``stem.*``, ``encoder.<level>.*`` and ``bottleneck.*`` (the
checkpoints of either load unchanged)::

    gathers [B, S, T, R]           shots are channels
      stem (TimeStem): (k x 1, stride 2 x 1) convs along time, then bilinear resampling
            [B, w, nz, nx]
      replicate-pad to a multiple of 2**depth  [B, w, Hp, Wp]
      encoder level i = 0..depth-1: DoubleConv -> attn ("encoder") -> E_i, maxpool
      bottleneck (level depth):     DoubleConv -> attn ("bottleneck") -> E_depth

Level ``i`` has ``w * 2**i`` channels at ``1 / 2**i`` of the padded grid. The attention modules
come from the network (the UNet's hook points; ``nn.Identity`` for U-MixFormer).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn


def check_sizes(owner: str, **sizes) -> None:
    """Every value a positive integer, else ``ValueError`` naming ``owner`` and the key."""
    for key, value in sizes.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner}: {key} must be a positive integer, got {value!r}")


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


class GridNet(nn.Module):
    """What the UNet-like networks share: the encoder (:meth:`build_encoder`, :meth:`_encode`),
    replicate padding to a multiple of ``2**depth``, the crop back to ``[nz, nx]``, and resampling
    of level maps onto the velocity grid."""

    def build_encoder(self, in_shots: int, nt: int, nz: int, nx: int, width: int, depth: int,
                      attn: Callable[[str, int, int], nn.Module] | None = None) -> list[int]:
        """Build the shared encoder into ``self``: ``stem``, ``encoder`` (``depth`` levels) and
        ``bottleneck``; set the padding to a multiple of ``2**depth``.

        Args:
            in_shots, nt: input gathers ``[B, in_shots, nt, n_receivers]``.
            nz, nx: the velocity grid the stem resamples onto.
            width: channels of level 0 (level ``i`` has ``width * 2**i``).
            depth: number of poolings; the bottleneck is level ``depth``.
            attn: ``attn(point, level, channels)`` -> the module after that level's DoubleConv,
                ``point`` ``"encoder"`` or ``"bottleneck"``; None: ``nn.Identity`` everywhere.

        Returns:
            The channels of each level, ``[width * 2**i for i in 0..depth]``.
        """
        def none(point: str, level: int, channels: int) -> nn.Module:
            return nn.Identity()

        attn = attn or none
        chans = [width * 2**i for i in range(depth + 1)]
        self.stem = TimeStem(in_shots, nt, nz, nx, width)
        # Each level's attention is made before its convs, as the parameters have always been
        # drawn: a seed initialises a network exactly as it did before this builder.
        self.encoder = nn.ModuleList(
            EncoderStage(chans[max(i - 1, 0)], chans[i], attn("encoder", i, chans[i])) for i in range(depth)
        )
        self.bottleneck = EncoderStage(chans[depth - 1], chans[depth], attn("bottleneck", depth, chans[depth]))
        self._init_grid(nz, nx, depth)
        return chans

    def _init_grid(self, nz: int, nx: int, depth: int) -> None:
        multiple = 2**depth
        pad_z, pad_x = -nz % multiple, -nx % multiple
        # F.pad order: (left, right, top, bottom); centred so both borders see the same padding.
        self.pad = (pad_x // 2, pad_x - pad_x // 2, pad_z // 2, pad_z - pad_z // 2)

    def _check_input(self, x: torch.Tensor) -> None:
        expected = (self.config["in_shots"], self.config["nt"], self.config["n_receivers"])
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"{type(self).__name__} expects gathers [B, {', '.join(map(str, expected))}], "
                             f"got {list(x.shape)}")

    def _pad_input(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pad, mode="replicate") if any(self.pad) else x

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Gathers ``[B, in_shots, nt, n_receivers]`` -> the encoder's features ``[E_0, ..., E_depth]``
        on the padded grid (``E_l`` at ``1 / 2**l`` resolution; ``E_depth`` the bottleneck's), for a
        network with ``stem``, ``encoder`` and ``bottleneck``."""
        self._check_input(x)
        x = self._pad_input(self.stem(x))
        feats = []
        for stage in self.encoder:
            x = stage(x)
            feats.append(x)
            x = F.max_pool2d(x, 2)
        feats.append(self.bottleneck(x))
        return feats

    def _crop(self, x: torch.Tensor) -> torch.Tensor:
        left, _, top, _ = self.pad
        return x[..., top : top + self.config["nz"], left : left + self.config["nx"]]

    def _with_salt(self, velocity: torch.Tensor, salt_logits: list, salt: bool):
        """``velocity``, or ``(velocity, [salt logits on the velocity grid, coarse to fine])``."""
        if not salt:
            return velocity
        levels = {str(i): s for i, s in enumerate(salt_logits) if s is not None}
        return velocity, list(self.maps_on_model_grid(levels).values())

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
