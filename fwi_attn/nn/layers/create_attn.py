"""Registry of single-input attention modules: ``create_attn(name, channels, **kwargs)``.

Every entry takes ``channels`` first and returns a module mapping ``[B, C, H, W]`` to the same
shape; variants of one family are ``functools.partial`` objects, not subclasses. ``"none"`` is
``nn.Identity`` so that a network's ``forward`` never branches on the variant. The two-input
attention gate lives in :mod:`fwi_attn.nn.layers.gate`.
"""
from __future__ import annotations

import functools
from collections.abc import Callable

from torch import nn

from .ca import CoordAttention
from .cbam import CBAM
from .mask import MaskAttention
from .psa import psa_parallel, psa_sequential
from .se import SqueezeExcite


def _identity(channels: int, **_: object) -> nn.Module:
    # Variant kwargs (e.g. a shared `reduction`) are meaningless without attention: ignore them.
    return nn.Identity()


_REGISTRY: dict[str, Callable[..., nn.Module]] = {
    "none": _identity,
    "se": SqueezeExcite,
    "cbam": CBAM,
    "ca": CoordAttention,
    "psa": psa_parallel,
    "psa_s": psa_sequential,
    "mask": MaskAttention,
    "mask_hard": functools.partial(MaskAttention, hard=True),
}


def list_attn() -> list[str]:
    """Names accepted by :func:`create_attn`, in registry order."""
    return list(_REGISTRY)


def create_attn(name: str, channels: int, **kwargs) -> nn.Module:
    """Build the attention module ``name`` for ``channels`` channels.

    Args:
        name: one of :func:`list_attn`.
        channels: ``C`` of the feature map ``[B, C, H, W]`` it will see.
        **kwargs: passed to the module (e.g. ``reduction=8``, ``num_heads=4``).

    Raises:
        ValueError: unknown ``name``; the message lists the valid names.
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown attention {name!r}; valid names: {', '.join(_REGISTRY)}") from None
    return factory(channels, **kwargs)
