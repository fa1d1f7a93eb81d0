"""Attention modules for the fwi-attn UNet, one file per family.

``create_attn(name, channels, **kw)`` builds the single-input modules (``list_attn()`` names
them); :class:`AttentionGate` is the two-input skip gate; :class:`MaskedQueryAttention` (Mask2Former,
guided by the coarser level's salt) and :class:`MixAttention` (U-MixFormer) take several inputs and
have their own places in the networks; :func:`capture_attention` collects the spatial maps every
module passes through its :class:`AttnProbe`.
"""
from .ca import CoordAttention
from .cbam import CBAM, ChannelAttention, SpatialAttention
from .create_attn import create_attn, list_attn
from .gate import AttentionGate, SkipPassthrough
from .m2f import MaskedQueryAttention, NoQueries, QueryPassthrough, SaltQueries, salt_attention_mask
from .mask import MaskAttention
from .mix import MixAttention
from .probe import AttnProbe, capture_attention
from .psa import PolarizedSelfAttention, psa_parallel, psa_sequential
from .se import SqueezeExcite, reduced_channels
from .tokens import TokenAttention, sine_positions

__all__ = [
    "AttentionGate",
    "AttnProbe",
    "CBAM",
    "ChannelAttention",
    "CoordAttention",
    "MaskAttention",
    "MaskedQueryAttention",
    "MixAttention",
    "NoQueries",
    "PolarizedSelfAttention",
    "QueryPassthrough",
    "SaltQueries",
    "SkipPassthrough",
    "SpatialAttention",
    "SqueezeExcite",
    "TokenAttention",
    "capture_attention",
    "create_attn",
    "list_attn",
    "psa_parallel",
    "psa_sequential",
    "reduced_channels",
    "salt_attention_mask",
    "sine_positions",
]
