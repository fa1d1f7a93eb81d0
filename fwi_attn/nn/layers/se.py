"""Squeeze-and-Excitation channel attention.

Hu, Shen, Albanie, Sun, Wu, "Squeeze-and-Excitation Networks", arXiv:1709.01507.

``y = x * sigmoid(W2 relu(W1 avgpool(x)))``: one weight per channel, shared by all positions.
There is no spatial map, so SE has no attention probe.
"""
from __future__ import annotations

import torch
from torch import nn


def reduced_channels(channels: int, reduction: int, min_channels: int) -> int:
    """Hidden width ``max(min_channels, channels // reduction)`` of a reduction bottleneck.

    The floor keeps the thin layers of a small UNet (16 channels at r=16 would give 1) from
    collapsing the excitation to a single scalar.
    """
    if channels < 1 or reduction < 1 or min_channels < 1:
        raise ValueError(
            f"channels, reduction and min_channels must be >= 1, got {channels}, {reduction}, {min_channels}"
        )
    return max(min_channels, channels // reduction)


class SqueezeExcite(nn.Module):
    """SE block: global average pool, FC ``C -> h`` + ReLU, FC ``h -> C`` + sigmoid, rescale.

    ``h = max(min_channels, C // reduction)``. Parameters: ``2*C*h + h + C``.

    Args:
        channels: ``C``, channels of the input.
        reduction: ``r``, 16 in the paper.
        min_channels: floor on ``h``.

    Shapes:
        x ``[B, C, H, W]`` -> ``[B, C, H, W]``.
    """

    def __init__(self, channels: int, reduction: int = 16, min_channels: int = 8) -> None:
        super().__init__()
        hidden = reduced_channels(channels, reduction, min_channels)
        self.fc1 = nn.Linear(channels, hidden)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c = x.shape[:2]
        w = torch.sigmoid(self.fc2(self.act(self.fc1(x.mean((2, 3))))))
        return x * w.view(b, c, 1, 1)
