"""Attention modules for the fwi-attn UNet, one file per family.

``create_attn(name, channels, **kw)`` builds the single-input modules (``list_attn()`` names
them); :class:`AttentionGate` is the two-input skip gate; :func:`capture_attention` collects the
spatial maps every module passes through its :class:`AttnProbe`.
"""
from .ca import CoordAttention
from .cbam import CBAM, ChannelAttention, SpatialAttention
from .create_attn import create_attn, list_attn
from .gate import AttentionGate, SkipPassthrough
from .mask import MaskAttention
from .probe import AttnProbe, capture_attention
from .psa import PolarizedSelfAttention, psa_parallel, psa_sequential
from .se import SqueezeExcite, reduced_channels

__all__ = [
    "AttentionGate",
    "AttnProbe",
    "CBAM",
    "ChannelAttention",
    "CoordAttention",
    "MaskAttention",
    "PolarizedSelfAttention",
    "SkipPassthrough",
    "SpatialAttention",
    "SqueezeExcite",
    "capture_attention",
    "create_attn",
    "list_attn",
    "psa_parallel",
    "psa_sequential",
    "reduced_channels",
]
