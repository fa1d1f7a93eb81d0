"""What each network of a study is for, free of torch (the workflow and the config import it).

The registry (:mod:`fwi_attn.nn.models`) builds every name; this says which names are attention
variants, which are baselines and which are the controls of the confirmation stage
(``docs/study.md``).
"""
from __future__ import annotations

#: Networks a study compares that are not attention variants: never selected for confirmation.
BASELINES = ("inversionnet",)

#: The confirmation stage's controls, and what each isolates from attention.
CONTROLS = {
    "none_salt": "the salt supervision m2f gets (salt heads and train.m2f_salt_weight)",
    "none_wide": "the parameter count (the plain UNet at the width nearest the compared variant's count)",
}
