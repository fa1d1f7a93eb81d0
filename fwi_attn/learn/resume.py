"""Resuming a run: the global RNG states, the checks on ``last.pt``, and restoring from it.

``last.pt`` (written by :func:`fwi_attn.learn.train.train` each epoch through
:func:`fwi_attn.nn.models.save_checkpoint`) holds the latest weights plus ``optimizer``,
``scheduler``, ``epoch`` (epochs done), ``epochs`` (planned), ``rng`` (:func:`rng_state`),
``history``, ``best_val_mae``, ``best_epoch``, ``best_state_dict`` and ``plateau``. A run
continued from it with the same settings reaches bit-identical weights on CPU.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fwi_attn.learn.runtime import TrainError

#: Train settings that do not change a run's weights: a resumed run may differ in them.
RUN_NEUTRAL_SETTINGS = ("num_workers", "processes", "tensorboard")


def rng_state() -> dict:
    """Every global RNG state, in types that ``torch.load(weights_only=True)`` reads back."""
    _, keys, pos, has_gauss, cached = np.random.get_state()
    version, state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": {"version": version, "state": list(state), "gauss": gauss},
    }


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` saved."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))

def describe_kwargs(kwargs: dict) -> str:
    """A model's constructor arguments as canonical JSON, for comparing two of them."""
    return json.dumps(kwargs, sort_keys=True, default=list)


def resume_problems(ckpt: dict, variant: str, seed: int, model_kwargs: dict, epochs: int, cfg) -> list[str]:
    """Why ``last.pt`` cannot be continued by this run (empty: it can)."""
    cfg_train = cfg.train.to_dict()
    problems = []
    if ckpt.get("name") != variant:
        problems.append(f"it holds variant {ckpt.get('name')!r}, this run is {variant!r}")
    elif describe_kwargs(ckpt["kwargs"]) != describe_kwargs(model_kwargs):
        problems.append(f"its model was built with {describe_kwargs(ckpt['kwargs'])}, this run's is "
                        f"{describe_kwargs(model_kwargs)} (grid or model section changed)")
    if ckpt.get("seed") != seed:
        problems.append(f"it was trained with seed {ckpt.get('seed')}, this run has seed {seed}")
    if ckpt.get("epochs") != epochs:
        problems.append(f"it planned {ckpt.get('epochs')} epochs (the schedule depends on it), this run {epochs}")
    saved_train = json.loads(ckpt.get("config", "{}")).get("train", {})
    # The global batch stays train.batch_size whatever the processes; logging changes no weight.
    changed = sorted(k for k in cfg_train if k in saved_train and saved_train[k] != cfg_train[k]
                     and k not in RUN_NEUTRAL_SETTINGS)
    if changed:
        problems.append("train settings changed: " + ", ".join(f"{k} {saved_train[k]!r} -> {cfg_train[k]!r}"
                                                                for k in changed))
    # The same data: a regenerated dataset or another normalisation makes a different run.
    from fwi_attn.config import recorded_differences

    changed = recorded_differences(json.loads(ckpt.get("config", "{}")), cfg,
                                   ("survey", "geology", f"datasets.{cfg.study.dataset}", "normalize"))
    if changed:
        problems.append("config changed: " + ", ".join(changed))
    return problems


def open_last(last_path: Path, resume, *, variant: str, seed: int, model_kwargs: dict, epochs: int, cfg,
              log=print) -> dict | None:
    """The ``last.pt`` this run continues from, or None to start afresh.

    ``resume``: False (never), True or ``"strict"`` (continue ``last_path`` if it exists; refuse
    one made with other settings) or ``"auto"`` (continue only an unfinished one made with the
    same settings, else start afresh, saying why through ``log``).

    Raises:
        TrainError: strict resume of a checkpoint made with other settings.
        CheckpointError: strict resume of an unreadable file.
    """
    if not resume:
        return None
    if not last_path.exists():
        log(f"no {last_path} yet: starting {variant} seed {seed} afresh")
        return None
    from fwi_attn.nn.models import CheckpointError

    ckpt = None
    try:
        # On the CPU: RNG states must stay there; load_state_dict moves the rest to the model.
        ckpt = torch.load(last_path, map_location="cpu", weights_only=True)
        problems = resume_problems(ckpt, variant, seed, model_kwargs, epochs, cfg)
    except Exception as e:  # a truncated or foreign file: torch raises many kinds
        if resume != "auto":
            raise CheckpointError(f"cannot resume from {last_path}: not a readable checkpoint "
                                  f"({' '.join(str(e).split())[:200]}); delete it to start afresh") from None
        problems = [f"it is not a readable checkpoint ({type(e).__name__})"]
    if resume == "auto" and not problems and (int(ckpt["epoch"]) >= epochs or ckpt.get("plateau")):
        problems = ["it is a finished run"]
    if problems and resume != "auto":
        raise TrainError(f"cannot resume from {last_path}: " + "; ".join(problems)
                         + ". Use another --out, or drop --resume to start afresh.")
    if problems:
        log(f"not resuming from {last_path}: {'; '.join(problems)}; starting afresh")
        return None
    return ckpt


@dataclass
class Progress:
    """Where a run stands: the epochs done (``start``), their history rows, the best epoch so far
    (lowest validation MAE) with its weights on the CPU, and whether it stopped on a plateau."""

    history: list[dict] = field(default_factory=list)
    start: int = 0
    best_val: float = math.inf
    best_epoch: int = 0
    best_state: dict | None = None
    plateau: bool = False

    def improve(self, model: nn.Module, val_mae: float, epoch: int) -> bool:
        """Record ``model`` as the best if ``val_mae`` beats the best so far; whether it did."""
        if not val_mae < self.best_val:
            return False
        self.best_val, self.best_epoch = val_mae, epoch
        self.best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        return True

    def last_checkpoint(self, optimizer, scheduler, epoch: int, epochs: int) -> dict:
        """The extras of ``last.pt`` after ``epoch`` epochs (the module doc lists them)."""
        return dict(epoch=epoch, epochs=epochs, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                    rng=rng_state(), history=self.history, best_val_mae=self.best_val,
                    best_epoch=self.best_epoch, best_state_dict=self.best_state, plateau=self.plateau)


def restore(ckpt: dict, model: nn.Module, optimizer, scheduler) -> Progress:
    """Load ``last.pt``'s weights, optimiser, schedule and RNG states; return its progress."""
    model.load_state_dict(ckpt["state_dict"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    set_rng_state(ckpt["rng"])
    return Progress(history=list(ckpt["history"]), start=int(ckpt["epoch"]), best_val=float(ckpt["best_val_mae"]),
                    best_epoch=int(ckpt["best_epoch"]), best_state=ckpt.get("best_state_dict"),
                    plateau=bool(ckpt.get("plateau")))
