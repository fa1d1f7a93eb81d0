"""Convolutional Block Attention Module (channel, then spatial attention).

Woo, Park, Lee, Kweon, "CBAM: Convolutional Block Attention Module", arXiv:1807.06521.

Channel attention: ``M_c = sigmoid(MLP(avgpool(x)) + MLP(maxpool(x)))`` with one shared MLP
``C -> h -> C``. Spatial attention on ``x' = x * M_c``:
``M_s = sigmoid(conv7x7([mean_c(x'); max_c(x')]))``. Output ``x' * M_s``. The spatial map
``M_s`` goes through the attention probe.

Follows the paper's equations: both pooled descriptors in both sub-modules, a plain 7x7
convolution (with bias, no BatchNorm) for the spatial map. Not to be confused with BAM
(average pooling only, dilated conv bottleneck with BatchNorm).
"""
from __future__ import annotations

import torch
from torch import nn

from .probe import AttnProbe
from .se import reduced_channels


class ChannelAttention(nn.Module):
    """CBAM channel attention: a shared MLP on average- and max-pooled descriptors.

    Parameters: ``2*C*h + h + C`` with ``h = max(min_channels, C // reduction)``.

    Shapes:
        x ``[B, C, H, W]`` -> weights ``[B, C, 1, 1]`` in (0, 1).
    """

    def __init__(self, channels: int, reduction: int = 16, min_channels: int = 8) -> None:
        super().__init__()
        hidden = reduced_channels(channels, reduction, min_channels)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        flat = x.flatten(2)
        # max() backpropagates through its indices; amax() spreads the gradient over ties with
        # extra full-size passes, several times slower on CPU.
        pooled = torch.cat([flat.mean(-1), flat.max(-1).values], dim=0)  # one MLP call for both
        avg, mx = self.mlp(pooled).split(b, dim=0)
        return torch.sigmoid(avg + mx).view(b, c, 1, 1)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: a ``k x k`` conv over the channel-wise mean and max maps.

    Parameters: ``2*k*k + 1``.

    Shapes:
        x ``[B, C, H, W]`` -> map ``[B, 1, H, W]`` in (0, 1).
    """

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd to keep the map's size, got {kernel_size}")
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        desc = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        # oneDNN's input gradient for a 2 -> 1 channel conv is 3-4x faster in channels_last.
        desc = desc.contiguous(memory_format=torch.channels_last)
        return torch.sigmoid(self.conv(desc))


class CBAM(nn.Module):
    """CBAM block: channel attention then spatial attention, in sequence.

    Args:
        channels: ``C``.
        reduction: ``r`` of the channel MLP, 16 in the paper.
        min_channels: floor on the MLP's hidden width.
        spatial_kernel: size of the spatial conv, 7 in the paper.

    Shapes:
        x ``[B, C, H, W]`` -> ``[B, C, H, W]``; probe: spatial map ``[B, 1, H, W]``.
    """

    def __init__(
        self, channels: int, reduction: int = 16, min_channels: int = 8, spatial_kernel: int = 7
    ) -> None:
        super().__init__()
        self.channel = ChannelAttention(channels, reduction, min_channels)
        self.spatial = SpatialAttention(spatial_kernel)
        self.probe = AttnProbe()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.channel(x)
        return x * self.probe(self.spatial(x))
