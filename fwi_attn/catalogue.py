"""What each network of a study is for, free of torch (the workflow and the config import it).

One record per registered network (:mod:`fwi_attn.nn.models` builds each name): its kind, a
one-line description and its training time relative to the plain UNet's. Attention variants
and baselines are what ``study.variants`` may list (the schema's enum); controls are added by
the confirmation stage (``docs/study.md``) to isolate attention from what comes with it.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variant:
    """One registered network.

    Attributes:
        name: the registry and ``study.variants`` name.
        kind: ``attention`` (a UNet attention variant; ``none`` is the plain UNet), ``baseline``
            (never selected for confirmation) or ``control`` (confirmation stage only).
        description: one line.
        train_cost: training time relative to the plain UNet's at the default study's size,
            measured (docs/benchmarks.md); sizes the workflow's time requests.
    """

    name: str
    kind: str
    description: str
    train_cost: float = 1.0


CATALOGUE: tuple[Variant, ...] = (
    Variant("none", "attention", "the plain UNet (no attention): the reference of the attention variants"),
    Variant("se", "attention", "squeeze-and-excitation channel attention at the bottleneck and decoder levels"),
    Variant("cbam", "attention", "CBAM channel then spatial attention at the bottleneck and decoder levels", 1.1),
    Variant("ca", "attention", "coordinate attention (pooled along each axis) at the bottleneck and decoder levels",
            1.15),
    Variant("psa", "attention", "polarized self-attention at the bottleneck and decoder levels", 1.05),
    Variant("mask", "attention", "full (H*W)^2 self-attention under a learned soft mask, two coarsest levels", 1.6),
    Variant("mask_hard", "attention", "mask with the straight-through binary mask", 1.75),
    Variant("gate", "attention", "attention gates on the UNet's skip connections", 1.05),
    Variant("m2f", "attention", "Mask2Former masked attention guided by the coarser level's predicted salt", 1.45),
    Variant("mixformer", "attention", "U-MixFormer mix-attention decoder on the UNet's encoder", 1.4),
    Variant("inversionnet", "baseline", "OpenFWI's InversionNet (encoder-decoder CNN)", 1.45),
    Variant("none_salt", "control", "the plain UNet with m2f's salt heads and salt loss", 1.05),
    Variant("none_wide", "control", "the plain UNet at the parameter count of a larger variant", 1.3),
)

VARIANTS = {v.name: v for v in CATALOGUE}

#: Networks a study compares that are not attention variants: never selected for confirmation.
BASELINES = tuple(v.name for v in CATALOGUE if v.kind == "baseline")

#: The confirmation stage's controls, and what each isolates from attention.
CONTROLS = {
    "none_salt": "the salt supervision m2f gets (salt heads and train.m2f_salt_weight)",
    "none_wide": "the parameter count (the plain UNet at the width nearest the compared variant's count)",
}

#: Relative training cost by name (the workflow's time requests read it).
TRAIN_COST = {v.name: v.train_cost for v in CATALOGUE}


def study_variants() -> tuple[str, ...]:
    """Names ``study.variants`` may list: the attention variants and baselines, in catalogue order."""
    return tuple(v.name for v in CATALOGUE if v.kind != "control")
