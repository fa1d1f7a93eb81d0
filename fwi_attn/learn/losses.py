"""Training losses on OpenFWI's normalised [-1, 1] velocity scale, salt deep supervision included."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fwi_attn.data.normalize import Normalizer
from fwi_attn.learn.metrics import ssim_torch
from fwi_attn.learn.runtime import TrainError


def make_loss(name: str, ssim_weight: float = 0.1, salt_weight: float = 0.0, salt_level: float | None = None):
    """The training loss on the normalised scale: ``loss(pred, target) -> scalar``.

    ``pred``, ``target``: ``[B, 1, nz, nx]`` in [-1, 1]. ``l1_l2`` is L1 + L2 (OpenFWI's
    InversionNet loss, ``lambda_g1v = lambda_g2v = 1``); ``l1_ssim`` adds
    ``ssim_weight * (1 - SSIM)`` with OpenFWI's SSIM on [0, 1].

    With ``salt_weight > 0`` the loss is a :class:`SaltAuxLoss` (``wants_salt`` is True): it takes
    ``(pred, salt_logits)``, what ``model(x, salt=True)`` returns, and ``salt_level`` (the salt
    threshold on the normalised scale) is required.
    """
    if name == "l1":
        base = F.l1_loss
    elif name == "l2":
        base = F.mse_loss
    elif name == "l1_l2":
        def base(pred, target):
            return F.l1_loss(pred, target) + F.mse_loss(pred, target)
    elif name == "l1_ssim":
        def base(pred, target):
            s = ssim_torch(Normalizer.unit_interval(pred), Normalizer.unit_interval(target)).mean()
            return F.l1_loss(pred, target) + ssim_weight * (1 - s)
    else:
        raise TrainError(f"unknown loss {name!r}; valid: l1, l2, l1_l2, l1_ssim")
    if salt_weight < 0:
        raise TrainError(f"the salt loss weight must be >= 0, got {salt_weight}")
    if salt_weight == 0:
        return base
    if salt_level is None:
        raise TrainError("a salt loss needs the salt threshold on the normalised velocity scale (salt_level)")
    return SaltAuxLoss(base, salt_weight, salt_level)


class SaltAuxLoss:
    """``base(pred, target) + weight * mean over levels of BCE(salt logits, target > salt_level)``.

    Called with ``((pred, salt_logits), target)``: ``pred`` ``[B, 1, nz, nx]``, ``salt_logits`` a
    list of ``[B, 1, nz, nx]`` logits (one per level, on the velocity grid; empty for a model
    without salt heads, whose loss is then ``base`` alone), ``target`` ``[B, 1, nz, nx]``.
    """

    wants_salt = True

    def __init__(self, base, weight: float, salt_level: float) -> None:
        self.base, self.weight, self.salt_level = base, float(weight), float(salt_level)

    def salt_loss(self, salt_logits: list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        """Mean binary cross-entropy of the levels' logits against the true salt mask."""
        truth = (target > self.salt_level).float()
        losses = [F.binary_cross_entropy_with_logits(s.float(), truth) for s in salt_logits]
        return torch.stack(losses).mean() if losses else target.new_zeros(())

    def __call__(self, output, target: torch.Tensor) -> torch.Tensor:
        pred, salt_logits = output
        return self.base(pred.float(), target) + self.weight * self.salt_loss(salt_logits, target)


def salt_weight(train_cfg, model: nn.Module) -> float:
    """The salt loss weight of a run: ``train.salt_aux_weight``, or, while that is 0,
    ``train.m2f_salt_weight`` for a model whose attention follows its salt heads (m2f)."""
    if train_cfg.salt_aux_weight > 0:
        return float(train_cfg.salt_aux_weight)
    return float(train_cfg.m2f_salt_weight) if getattr(model, "needs_salt_supervision", False) else 0.0

