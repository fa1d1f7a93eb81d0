"""InversionNet, the OpenFWI baseline: gathers -> 512-d code -> velocity, no skips.

Wu & Lin, "InversionNet: An Efficient and Accurate Data-Driven Full Waveform Inversion",
IEEE TCI 2019 (arXiv:1811.07875); as released with OpenFWI, Deng et al., NeurIPS 2022 Datasets
and Benchmarks (arXiv:2111.02926).

For OpenFWI's shape (5 shots x 1000 steps x 70 receivers -> 70 x 70) and ``width_mult=1`` the
layers, their sizes and their state-dict names (``convblock1.layers.0.weight``, ...) follow
OpenFWI's ``network.py`` (``tests/test_models.py`` checks sizes and parameter count, 24.4 M). That
is the extent of the compatibility: OpenFWI's released weights are not tested here, its checkpoint
files are not in this project's format (:func:`fwi_attn.nn.models.load_model` refuses them; their
``"model"`` state dict would have to go through ``load_state_dict``), and OpenFWI normalises its
gathers with its own log and min-max constants, not this project's ``stats.json``. Other sizes
follow the same recipe:

* encoder: four ``k x 1`` convs with stride 2 along time (7x1 then 3x1, each followed by an
  unstrided 3x1), then three 3x3 stride-2 stages; the result is average-pooled to at most
  ``8 x 9`` (OpenFWI's size at this point) so the code layer keeps OpenFWI's size, and a conv
  whose kernel covers the whole map gives the ``[B, 16w, 1, 1]`` code;
* decoder: a transposed conv to ``ceil(nz/16) x ceil(nx/16)`` (5 x 5 for 70 x 70), four x2
  transposed-conv stages, a centred crop to ``[nz, nx]``, a 3x3 conv + BatchNorm + Tanh.

Widths ``w * (32, 64, 128, 256, 512)`` with ``w = width_mult`` (OpenFWI's ``dim1..dim5``).
"""
from __future__ import annotations

import math

import torch
from torch import nn

_BASE_DIMS = (32, 64, 128, 256, 512)
_CODE_KERNEL_MAX = (8, math.ceil(70 / 8))  # OpenFWI's (8, 9) at 1000 x 70


class ConvBlock(nn.Module):
    """OpenFWI's ConvBlock: conv + BatchNorm + LeakyReLU(0.2), held in ``self.layers``."""

    def __init__(self, c_in: int, c_out: int, kernel_size=3, stride=1, padding=1) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Conv2d(c_in, c_out, kernel_size, stride, padding),
            nn.BatchNorm2d(c_out),
            nn.LeakyReLU(0.2, inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class DeconvBlock(nn.Module):
    """OpenFWI's DeconvBlock: transposed conv + BatchNorm + LeakyReLU(0.2)."""

    def __init__(self, c_in: int, c_out: int, kernel_size=2, stride=2, padding=0) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.ConvTranspose2d(c_in, c_out, kernel_size, stride, padding),
            nn.BatchNorm2d(c_out),
            nn.LeakyReLU(0.2, inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class ConvBlockTanh(nn.Module):
    """OpenFWI's ConvBlock_Tanh: 3x3 conv + BatchNorm + Tanh."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(nn.Conv2d(c_in, c_out, 3, 1, 1), nn.BatchNorm2d(c_out), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def _conv_out(n: int, kernel: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - kernel) // stride + 1


class InversionNet(nn.Module):
    """OpenFWI's InversionNet for arbitrary gather and model sizes.

    Args:
        in_shots, nt, n_receivers: input gathers ``[B, in_shots, nt, n_receivers]``.
        nz, nx: output model size, cells.
        width_mult: multiplies OpenFWI's widths (32, 64, 128, 256, 512). Named apart from the
            UNet's ``width`` (channels of its first level) so a study's shared ``width`` does not
            rescale the baseline.

    Shapes:
        ``[B, in_shots, nt, n_receivers]`` -> ``[B, 1, nz, nx]`` in (-1, 1); with ``salt=True``
        ``(velocity, [])``: there are no decoder levels with salt heads.
    """

    def __init__(
        self,
        in_shots: int = 5,
        nt: int = 1000,
        n_receivers: int = 70,
        nz: int = 70,
        nx: int = 70,
        width_mult: float = 1.0,
    ) -> None:
        super().__init__()
        for key, value in dict(in_shots=in_shots, nt=nt, n_receivers=n_receivers, nz=nz, nx=nx).items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"InversionNet: {key} must be a positive integer, got {value!r}")
        if not width_mult > 0:
            raise ValueError(f"InversionNet: width_mult must be > 0, got {width_mult!r}")
        self.config = dict(in_shots=in_shots, nt=nt, n_receivers=n_receivers, nz=nz, nx=nx, width_mult=width_mult)
        self.needs_salt_supervision = False
        d1, d2, d3, d4, d5 = (max(1, round(d * width_mult)) for d in _BASE_DIMS)

        self.convblock1 = ConvBlock(in_shots, d1, kernel_size=(7, 1), stride=(2, 1), padding=(3, 0))
        self.convblock2_1 = ConvBlock(d1, d2, kernel_size=(3, 1), stride=(2, 1), padding=(1, 0))
        self.convblock2_2 = ConvBlock(d2, d2, kernel_size=(3, 1), padding=(1, 0))
        self.convblock3_1 = ConvBlock(d2, d2, kernel_size=(3, 1), stride=(2, 1), padding=(1, 0))
        self.convblock3_2 = ConvBlock(d2, d2, kernel_size=(3, 1), padding=(1, 0))
        self.convblock4_1 = ConvBlock(d2, d3, kernel_size=(3, 1), stride=(2, 1), padding=(1, 0))
        self.convblock4_2 = ConvBlock(d3, d3, kernel_size=(3, 1), padding=(1, 0))
        self.convblock5_1 = ConvBlock(d3, d3, stride=2)
        self.convblock5_2 = ConvBlock(d3, d3)
        self.convblock6_1 = ConvBlock(d3, d4, stride=2)
        self.convblock6_2 = ConvBlock(d4, d4)
        self.convblock7_1 = ConvBlock(d4, d4, stride=2)
        self.convblock7_2 = ConvBlock(d4, d4)

        t = _conv_out(nt, 7, 2, 3)
        for _ in range(3):
            t = _conv_out(t, 3, 2, 1)
        r = n_receivers
        for _ in range(3):
            t, r = _conv_out(t, 3, 2, 1), _conv_out(r, 3, 2, 1)
        code_kernel = (min(t, _CODE_KERNEL_MAX[0]), min(r, _CODE_KERNEL_MAX[1]))
        # Long records or wide spreads would otherwise grow the code layer with the input size.
        self.pool = nn.AdaptiveAvgPool2d(code_kernel) if code_kernel != (t, r) else nn.Identity()
        self.convblock8 = ConvBlock(d4, d5, kernel_size=code_kernel, padding=0)

        kz, kx = math.ceil(nz / 16), math.ceil(nx / 16)
        self.deconv1_1 = DeconvBlock(d5, d5, kernel_size=(kz, kx))
        self.deconv1_2 = ConvBlock(d5, d5)
        self.deconv2_1 = DeconvBlock(d5, d4, kernel_size=4, stride=2, padding=1)
        self.deconv2_2 = ConvBlock(d4, d4)
        self.deconv3_1 = DeconvBlock(d4, d3, kernel_size=4, stride=2, padding=1)
        self.deconv3_2 = ConvBlock(d3, d3)
        self.deconv4_1 = DeconvBlock(d3, d2, kernel_size=4, stride=2, padding=1)
        self.deconv4_2 = ConvBlock(d2, d2)
        self.deconv5_1 = DeconvBlock(d2, d1, kernel_size=4, stride=2, padding=1)
        self.deconv5_2 = ConvBlock(d1, d1)
        self.deconv6 = ConvBlockTanh(d1, 1)
        extra_z, extra_x = 16 * kz - nz, 16 * kx - nx
        self.crop = (extra_z // 2, extra_x // 2)  # OpenFWI crops 5 cells per side of 80 x 80

    def forward(self, x: torch.Tensor, salt: bool = False):
        """``[B, in_shots, nt, n_receivers]`` -> ``[B, 1, nz, nx]`` (``(velocity, [])`` if ``salt``)."""
        expected = (self.config["in_shots"], self.config["nt"], self.config["n_receivers"])
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"InversionNet expects gathers [B, {', '.join(map(str, expected))}], got {list(x.shape)}")
        for block in (
            self.convblock1, self.convblock2_1, self.convblock2_2, self.convblock3_1, self.convblock3_2,
            self.convblock4_1, self.convblock4_2, self.convblock5_1, self.convblock5_2,
            self.convblock6_1, self.convblock6_2, self.convblock7_1, self.convblock7_2,
            self.pool, self.convblock8,
            self.deconv1_1, self.deconv1_2, self.deconv2_1, self.deconv2_2, self.deconv3_1,
            self.deconv3_2, self.deconv4_1, self.deconv4_2, self.deconv5_1, self.deconv5_2,
        ):
            x = block(x)
        top, left = self.crop
        x = x[..., top : top + self.config["nz"], left : left + self.config["nx"]]
        x = self.deconv6(x)
        return (x, []) if salt else x
