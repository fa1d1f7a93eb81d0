"""Train one network variant with one seed: ``fwi-attn train``.

Protocol (the same for every variant, so that they compare fairly):

* inputs: normalised gathers ``[B, shot, time, receiver]``; targets: normalised velocity
  ``[B, 1, nz, nx]`` in [-1, 1] (see :mod:`fwi_attn.data.dataset`; constants from ``stats.json``);
* AdamW (``train.lr``, ``train.weight_decay``), loss ``train.loss``: ``l1`` (default), ``l2`` or
  ``l1_ssim`` = L1 + ``ssim_weight`` * (1 - SSIM on [0, 1]); learning-rate schedule
  ``train.scheduler`` stepped per batch (``onecycle``: OneCycleLR peaking at ``lr``; ``cosine``:
  cosine decay from ``lr`` to 0; ``none``: constant); gradient-norm clipping ``train.grad_clip``;
* salt deep supervision (:func:`make_loss`): with ``train.salt_aux_weight`` ``w > 0`` every UNet
  variant gets salt heads (bottleneck and each decoder level) and the loss adds ``w`` times their
  mean binary cross-entropy against the true salt mask (velocity above
  ``evaluate.salt_threshold``); ``m2f``, whose masked attention follows those heads, always has
  them and uses ``train.m2f_salt_weight`` while ``salt_aux_weight`` is 0 (:func:`salt_weight`), so
  setting ``salt_aux_weight`` to the same value gives every variant m2f's supervision;
* validation every epoch: MAE on OpenFWI's [-1, 1] scale and SSIM on [0, 1]
  (:mod:`fwi_attn.learn.metrics`), predictions clipped to [-1, 1];
* speed: bf16 autocast (``train.bf16``) on CUDA and on CPUs with native bf16 instructions
  (measured 1.6-1.7x on an AVX512-BF16 EPYC), ``channels_last`` on both (oneDNN's CPU
  convolutions are 1.2-1.6x faster in that layout), optional ``torch.compile``.

Outputs in ``--out DIR``, every file written atomically:

* ``model.pt``: best epoch (lowest validation MAE), :func:`fwi_attn.nn.models.save_checkpoint`
  with extras ``variant, seed, epoch, val_mae, dataset, normalization, config``;
* ``last.pt``: the latest epoch plus ``optimizer``, ``scheduler``, ``epoch`` (epochs done),
  ``epochs`` (planned), ``rng`` (torch, CUDA, numpy and Python states), ``history``,
  ``best_val_mae``, ``best_epoch``, ``best_state_dict`` (the best epoch's weights, so that a
  resumed run can rewrite a removed ``model.pt``): ``--resume`` continues from it to bit-identical weights
  on CPU;
* ``history.csv``: ``epoch, train_loss, val_mae, val_ssim, lr, seconds`` (one row per epoch;
  ``lr`` is the rate of the epoch's last step, ``seconds`` its wall time, validation included).

Reproducibility: torch, numpy and ``random`` are seeded from ``--seed`` before the model is
built; the order of training samples in epoch ``e`` is :class:`~torch.utils.data.DistributedSampler`'s
permutation for seed :func:`shuffle_seed` and epoch ``e``, so a resumed run sees the same batches;
deterministic algorithms are on (``train.deterministic``); ``fwi-attn train`` runs ``study.threads``
torch threads.

Several processes (``torchrun --nproc_per_node=N fwi-attn train ...``; ``train.processes`` tells the
workflow to launch it): :func:`distributed` finds torchrun's ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``, joins the process group (NCCL on CUDA, each rank on ``cuda:LOCAL_RANK``; gloo on
CPU) and leaves it at the end, error included. The network is wrapped in
:class:`~torch.nn.parallel.DistributedDataParallel`; ``train.batch_size`` stays the *global* batch,
split evenly (``batch_size / N`` per rank, so it must divide), and the one sampler deals each
global batch of the one-process run out across the ranks: the same steps, learning-rate schedule
and averaged gradients. On CUDA BatchNorm becomes :class:`~torch.nn.SyncBatchNorm` (statistics over
the global batch, as in one process); torch's SyncBatchNorm runs on GPUs only, so on CPU each rank
normalises its own share of the batch and the weights drift slightly from a one-process run's
(measured in ``tests/test_distributed.py``). Validation is split across ranks and its sums
all-reduced, so every rank sees the same MAE and takes the same best-epoch decision; rank 0
alone writes ``model.pt``, ``last.pt``, ``history.csv`` and the log lines, and ``--resume`` reads
``last.pt`` on every rank.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from fwi_attn.data.dataset import Normalizer, ShardDataset, check_stats, check_survey, load_stats, split_sources
from fwi_attn.layout import default_stats_path
from fwi_attn.learn.metrics import SSIM_WINDOW, mae_torch, ssim_torch
from fwi_attn.data.store import atomic_path

HISTORY_COLUMNS = ("epoch", "train_loss", "val_mae", "val_ssim", "lr", "seconds")


class TrainError(ValueError):
    """Training cannot start or continue: bad variant, mismatched resume, diverged loss."""


# ----------------------------------------------------------------------------- settings


@contextlib.contextmanager
def torch_settings(deterministic: bool, device: torch.device):
    """Set torch's determinism (and cuDNN autotuning) for a run; restore both afterwards.

    Both are process-wide, so a caller (a test, a notebook) gets its own settings back. The thread
    count is the process's: the command line sets ``study.threads`` (``fwi_attn.cli.set_threads``).
    """
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    old_bench = torch.backends.cudnn.benchmark
    change_det = deterministic != old_det or (deterministic and not old_warn)
    try:
        if deterministic and device.type == "cuda":
            # cuBLAS needs this before its first call to be deterministic.
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # warn_only: an op without a deterministic kernel (some CUDA backward passes) warns
        # instead of stopping the run. Only called on a change: the call imports
        # torch._inductor (~1 s), which a short evaluation job would otherwise pay for nothing.
        if change_det:
            torch.use_deterministic_algorithms(deterministic, warn_only=True)
        torch.backends.cudnn.benchmark = not deterministic
        yield
    finally:
        if change_det:
            torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        torch.backends.cudnn.benchmark = old_bench


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def shuffle_seed(seed: int) -> int:
    """The training sampler's seed for a run with ``seed``; epoch ``e`` is shuffled with
    ``shuffle_seed(seed) + e`` (DistributedSampler's rule). Hashed so that run seeds ``k`` and
    ``k + 1`` do not see the same orders one epoch apart."""
    return int(np.random.SeedSequence([seed, 0x5A3F]).generate_state(1)[0])


# ----------------------------------------------------------------------------- processes


@dataclass(frozen=True)
class Ranks:
    """This process's place in a torchrun launch; one process: rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this process writes the run's files and log."""
        return self.rank == 0


def torchrun_ranks(environ=None) -> Ranks:
    """The ranks torchrun set in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""
    env = os.environ if environ is None else environ
    try:
        world_size = int(env.get("WORLD_SIZE", "1") or 1)
        if world_size <= 1:
            return Ranks()
        return Ranks(int(env["RANK"]), world_size, int(env.get("LOCAL_RANK", env["RANK"])))
    except (KeyError, ValueError):
        raise TrainError("WORLD_SIZE, RANK or LOCAL_RANK is missing or not an integer: launch several "
                         "processes with torchrun, or unset WORLD_SIZE for one") from None


@contextlib.contextmanager
def distributed(ranks: Ranks, device: torch.device):
    """Join the process group of ``ranks`` (:func:`torchrun_ranks`), if several; yield the device
    this process trains on.

    NCCL on CUDA, where each rank trains on ``cuda:LOCAL_RANK``; gloo on CPU. The group (made
    here, not one a caller made already) is destroyed on the way out, error included; on a
    normal exit the ranks meet at a barrier first.
    """
    if ranks.world_size == 1:
        yield device
        return
    import torch.distributed as dist

    if device.type == "cuda":
        device = torch.device("cuda", ranks.local_rank)
        torch.cuda.set_device(device)
    made = not dist.is_initialized()
    if made:
        kwargs = {"device_id": device} if device.type == "cuda" else {}
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=ranks.rank,
                                world_size=ranks.world_size, **kwargs)
    try:
        yield device
        # Leave together: no rank's exit (or next job step) runs ahead of rank 0's last write.
        dist.barrier()
    finally:
        if made and dist.is_initialized():
            dist.destroy_process_group()


def sum_over_ranks(values: list[float], device: torch.device) -> list[float]:
    """``values`` summed over every rank of the process group (float64); unchanged in one process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)  # NCCL reduces device tensors only
    dist.all_reduce(t)
    return t.tolist()


def wrap_for_ranks(model: nn.Module, ranks: Ranks, device: torch.device) -> nn.Module:
    """``model`` itself in one process; else ``DistributedDataParallel`` around it, with
    BatchNorm made :class:`~torch.nn.SyncBatchNorm` on CUDA (global-batch statistics; torch's
    runs on GPUs only). The conversion swaps modules in place, so ``model`` keeps its
    variant, config and state-dict keys."""
    if ranks.world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if device.type == "cuda":
        nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def broadcast_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank: each rank's own batch
    share updates them after DDP's last broadcast, and rank 0's are the ones saved."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for buffer in model.buffers():
            dist.broadcast(buffer, 0)


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


# ----------------------------------------------------------------------------- pieces


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


def make_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with the fused kernel (one pass over all parameters; CPU and CUDA)."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)


def make_scheduler(name: str, optimizer: torch.optim.Optimizer, lr: float, total_steps: int):
    """A per-step learning-rate schedule over ``total_steps`` optimiser steps."""
    total_steps = max(int(total_steps), 1)
    if name == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps)
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    if name == "none":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    raise TrainError(f"unknown scheduler {name!r}; valid: onecycle, cosine, none")


def make_loader(dataset, batch_size: int, *, shuffle: bool, num_workers: int = 0,
                device: torch.device = torch.device("cpu"), generator: torch.Generator | None = None,
                sampler=None) -> DataLoader:
    """A DataLoader with the project's settings: persistent workers (each opens its files
    once), pinned memory on CUDA, and a caller-seeded shuffling generator or a ``sampler``
    (then ``shuffle`` must be False)."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=num_workers,
                      persistent_workers=num_workers > 0, pin_memory=device.type == "cuda",
                      generator=generator, sampler=sampler, drop_last=False)


def train_sampler(dataset, seed: int, ranks: Ranks):
    """The training order: DistributedSampler over ``ranks`` (one process: rank 0 of 1) seeded with
    :func:`shuffle_seed`; call ``set_epoch`` each epoch. Rank ``r`` takes every ``world_size``-th
    sample of one permutation, so per-rank batches of ``batch_size / world_size`` together make
    the one-process run's batches of ``batch_size`` (exactly when the split is a multiple of the
    global batch; otherwise the last batch of an epoch is padded from its start)."""
    from torch.utils.data import DistributedSampler

    return DistributedSampler(dataset, num_replicas=ranks.world_size, rank=ranks.rank, shuffle=True,
                              seed=shuffle_seed(seed), drop_last=False)


def _to(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def bf16_supported(device: torch.device) -> bool:
    """Whether bf16 autocast pays on ``device``: CUDA with bf16, or a CPU with native bf16
    instructions (AVX512-BF16 or AMX; elsewhere bf16 is emulated and slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return any(getattr(torch.cpu, name, lambda: False)()
                   for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
    return False


def autocast(device: torch.device, bf16: bool):
    """bf16 autocast on ``device`` when ``bf16`` (see :func:`bf16_supported`), else a no-op context."""
    if bf16 and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer, scheduler, loss_fn, *,
                    device: torch.device, bf16: bool = False, channels_last: bool = False,
                    grad_clip: float | None = None, progress: bool = False, desc: str = "") -> dict:
    """One pass over ``loader``: forward, loss, backward, clip, step, schedule, per batch.

    Args:
        model: maps ``[B, shot, time, receiver]`` to ``[B, 1, nz, nx]``; put in train mode here.
        loader: yields ``(x, y)`` batches (normalised gathers and velocity).
        scheduler: stepped after every optimiser step (or None).
        bf16: autocast to bfloat16 (the loss is computed in float32).
        channels_last: move inputs to that layout (the model should be in it already).
        grad_clip: max gradient 2-norm, or None.

    Returns:
        ``{"loss": mean loss per sample, "lr": rate of the last step, "samples": n, "steps": k}``.

    Raises:
        TrainError: the loss became NaN/inf.
    """
    model.train()
    total, n, steps, lr = torch.zeros((), dtype=torch.float64), 0, 0, optimizer.param_groups[0]["lr"]
    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(loader), desc=desc, unit="batch", leave=False, file=sys.stderr)
    wants_salt = getattr(loss_fn, "wants_salt", False)  # a SaltAuxLoss needs the salt heads' logits
    for x, y in loader:
        x, y = _to(x, device, channels_last), y.to(device, non_blocking=True)
        with autocast(device, bf16):
            pred = model(x, salt=True) if wants_salt else model(x)
        loss = loss_fn(pred, y) if wants_salt else loss_fn(pred.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        # Accumulate on the device: no host sync per batch on CUDA.
        total = total.to(loss.device) + loss.detach().double() * len(x)
        n += len(x)
        steps += 1
        if bar is not None:
            bar.update(1)
            if steps % 10 == 0 or steps == len(loader):
                bar.set_postfix(loss=f"{loss.item():.4f}")
    if bar is not None:
        bar.close()
    mean = float(total) / max(n, 1)
    if not math.isfinite(mean):
        raise TrainError(f"the training loss became {mean} ({desc}): lower train.lr or keep train.grad_clip")
    return {"loss": mean, "lr": float(lr), "samples": n, "steps": steps}


@torch.no_grad()
def validate(model: nn.Module, loader, *, device: torch.device, bf16: bool = False,
             channels_last: bool = False) -> dict:
    """Validation MAE on [-1, 1] and SSIM on [0, 1], averaged over samples.

    Both are the per-sample metrics of :mod:`fwi_attn.learn.metrics` (:func:`mae_torch`,
    :func:`ssim_torch`), on the device, in float32 summed in float64, on the raw network output
    (unclipped, as evaluation scores it). SSIM is NaN for grids smaller than its 11-cell window.
    Under torchrun each rank validates its share of the samples and the sums are all-reduced,
    so every rank returns the metrics of the whole split.
    """
    model.eval()
    mae_sum, ssim_sum, n = 0.0, 0.0, 0
    for x, y in loader:
        x, y = _to(x, device, channels_last), y.to(device, non_blocking=True)
        with autocast(device, bf16):
            pred = model(x)
        pred = pred.float()
        mae_sum += float(mae_torch(pred, y).sum())
        if min(y.shape[-2:]) >= SSIM_WINDOW:
            unit = Normalizer.unit_interval
            ssim_sum += float(ssim_torch(unit(pred), unit(y)).sum(dtype=torch.float64))
        n += len(x)
    mae_sum, ssim_sum, n = sum_over_ranks([mae_sum, ssim_sum, n], device)
    ssim = ssim_sum / max(n, 1) if min(loader.dataset.grid) >= SSIM_WINDOW else math.nan
    return {"mae": mae_sum / max(n, 1), "ssim": ssim}


def model_hyper(cfg, width: int | None = None) -> dict:
    """The ``model`` section's keys that some registered model accepts (width, depth, ...), with
    ``width`` in place of ``model.width`` when given, and ``salt_heads=True`` when
    ``train.salt_aux_weight`` asks for salt deep supervision."""
    from fwi_attn.nn.models import model_kwargs

    shape_keys = {"in_shots", "nt", "n_receivers", "nz", "nx"}
    hyper = {k: v for k, v in cfg.model.to_dict().items() if k in model_kwargs() - shape_keys}
    if width is not None:
        if width < 1:
            raise TrainError(f"width must be at least 1, got {width}")
        hyper["width"] = int(width)
    if cfg.train.salt_aux_weight > 0:
        hyper["salt_heads"] = True  # the salt deep supervision's heads, on every UNet variant
    return hyper


def write_history(path: str | os.PathLike, history: list[dict]) -> None:
    """``history.csv`` with :data:`HISTORY_COLUMNS`, atomically."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HISTORY_COLUMNS)
    for row in history:
        w.writerow([row["epoch"]] + [format(float(row[c]), ".8g") for c in HISTORY_COLUMNS[1:]])
    with atomic_path(path) as tmp:
        tmp.write_text(buf.getvalue())


def read_history(path: str | os.PathLike) -> list[dict]:
    """Rows of a ``history.csv`` as dicts of numbers."""
    with open(path, newline="") as f:
        return [{k: (int(v) if k == "epoch" else float(v)) for k, v in row.items()} for row in csv.DictReader(f)]


# ----------------------------------------------------------------------------- the run


@dataclass
class TrainResult:
    """What :func:`train` did. ``finished`` is False when ``stop_after`` ended it early, True after
    every epoch or a stop on a validation plateau (``train.patience``)."""

    out: Path
    variant: str
    seed: int
    epochs_done: int
    epochs: int
    best_epoch: int
    best_val_mae: float
    finished: bool
    history: list[dict] = field(default_factory=list)
    rank: int = 0  #: this process's rank under torchrun (0: the one that wrote the files)


def _describe_kwargs(kwargs: dict) -> str:
    return json.dumps(kwargs, sort_keys=True, default=list)


def _resume_problems(ckpt: dict, variant: str, seed: int, model_kwargs: dict, epochs: int, cfg) -> list[str]:
    """Why ``last.pt`` cannot be continued by this run (empty: it can)."""
    cfg_train = cfg.train.to_dict()
    problems = []
    if ckpt.get("name") != variant:
        problems.append(f"it holds variant {ckpt.get('name')!r}, this run is {variant!r}")
    elif _describe_kwargs(ckpt["kwargs"]) != _describe_kwargs(model_kwargs):
        problems.append(f"its model was built with {_describe_kwargs(ckpt['kwargs'])}, this run's is "
                        f"{_describe_kwargs(model_kwargs)} (grid or model section changed)")
    if ckpt.get("seed") != seed:
        problems.append(f"it was trained with seed {ckpt.get('seed')}, this run has seed {seed}")
    if ckpt.get("epochs") != epochs:
        problems.append(f"it planned {ckpt.get('epochs')} epochs (the schedule depends on it), this run {epochs}")
    saved_train = json.loads(ckpt.get("config", "{}")).get("train", {})
    # Neither changes the run: the global batch stays train.batch_size whatever the processes.
    changed = sorted(k for k in cfg_train if k in saved_train and saved_train[k] != cfg_train[k]
                     and k not in ("num_workers", "processes"))
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


def train(cfg, variant: str, seed: int, out: str | os.PathLike, *, resume: bool = False,
          epochs: int | None = None, stop_after: int | None = None, stats_path: str | os.PathLike | None = None,
          width: int | None = None, progress: bool = True, log=print) -> TrainResult:
    """Train ``variant`` with ``seed`` on the config's dataset; write checkpoints and history.

    Args:
        cfg: a validated :class:`fwi_attn.config.Config`.
        variant: a registered model name (:func:`fwi_attn.nn.models.list_models`).
        seed: the run's seed (model initialisation and data order).
        out: output folder.
        resume: ``True`` (or ``"strict"``): continue from ``out/last.pt`` if it exists (else start
            afresh), and refuse one made with other settings. ``"auto"`` (the workflow's): continue
            only an unfinished ``last.pt`` made with the same settings, else start afresh, saying why.
        epochs: total epochs (default ``train.epochs``).
        stop_after: stop after this many epochs of this call (a time-limited job continues
            later with ``resume``).
        stats_path: normalisation file (default ``<data_dir>/<dataset>/stats.json``).
        width: the UNet's base width for this run instead of ``model.width`` (the parameter-matched
            control ``none_wide``; see :func:`fwi_attn.results.design.matched_width`).
        progress: show a tqdm bar per epoch.
        log: called with one summary line per epoch.

    Raises:
        TrainError, StatsError, DatasetError, ShardError, CheckpointError: with messages
        naming the file or setting at fault.
    """
    from fwi_attn.nn.models import count_macs, count_params, create_model, list_models, save_checkpoint
    from fwi_attn.config import resolve_device

    if variant not in list_models():
        raise TrainError(f"unknown variant {variant!r}; valid: {', '.join(list_models())}")
    from fwi_attn.config import train_settings

    tc = train_settings(cfg, variant)
    epochs = int(tc.epochs if epochs is None else epochs)
    if epochs < 1:
        raise TrainError(f"epochs must be at least 1, got {epochs}")
    if stop_after is not None and stop_after < 1:
        raise TrainError(f"stop_after must be at least 1 epoch, got {stop_after} (omit it to train every epoch)")
    out = Path(out)
    device = resolve_device(cfg.study.device)
    ranks = torchrun_ranks()
    if tc.batch_size % ranks.world_size:
        raise TrainError(f"train.batch_size {tc.batch_size} does not split evenly over {ranks.world_size} "
                         f"torchrun processes (it is the global batch): make it a multiple of {ranks.world_size}")
    from fwi_attn.data.store import check_output

    check_output(out, folder=True)
    stats_path = Path(stats_path) if stats_path else default_stats_path(cfg)
    stats = load_stats(stats_path)
    norm = Normalizer.from_stats(stats)
    train_ds = ShardDataset(split_sources(cfg, "train"), norm)
    val_ds = ShardDataset(split_sources(cfg, "val"), norm)
    from fwi_attn.resources import caches_samples

    if caches_samples(cfg, train_ds.nbytes() + val_ds.nbytes()):
        # Normalising a sample costs ~15% of its training step on a CPU at default-study size.
        train_ds.keep_in_memory()
        val_ds.keep_in_memory()
    for ds in (train_ds, val_ds):
        check_survey(cfg, ds)
        check_stats(stats, ds, stats_path)

    with distributed(ranks, device) as device, torch_settings(tc.deterministic, device):
        rank_batch = tc.batch_size // ranks.world_size
        if not ranks.main:
            log, progress = (lambda line: None), False
        seed_everything(seed)
        model = create_model(variant, **train_ds.model_shape(), **model_hyper(cfg, width))
        channels_last = bool(tc.channels_last)
        model = model.to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        bf16 = bool(tc.bf16) and bf16_supported(device)
        optimizer = make_optimizer(model, tc.lr, tc.weight_decay)
        generator = torch.Generator()
        sampler = train_sampler(train_ds, seed, ranks)
        train_loader = make_loader(train_ds, rank_batch, shuffle=False, num_workers=tc.num_workers,
                                   device=device, generator=generator, sampler=sampler)
        # Validation: every world_size-th sample per rank, no padding (each counted once).
        val_share = range(ranks.rank, len(val_ds), ranks.world_size) if ranks.world_size > 1 else None
        val_loader = make_loader(val_ds, rank_batch, shuffle=False, num_workers=tc.num_workers, device=device,
                                 sampler=val_share)
        scheduler = make_scheduler(tc.scheduler, optimizer, tc.lr, epochs * len(train_loader))
        loss_fn = make_loss(tc.loss, tc.ssim_weight, salt_weight(tc, model),
                            float(norm.velocity(cfg.evaluate.salt_threshold)))
        net = wrap_for_ranks(model, ranks, device)
        step_model = torch.compile(net) if tc.compile else net
        # DDP's forward may communicate, and the ranks' validation shares can differ in size.
        eval_model = step_model if net is model else (torch.compile(model) if tc.compile else model)

        history: list[dict] = []
        start, best_val, best_epoch, best_state = 0, math.inf, 0, None
        last_path, best_path = out / "last.pt", out / "model.pt"
        ckpt = None
        if resume and last_path.exists():
            from fwi_attn.nn.models import CheckpointError

            try:
                # On the CPU: RNG states must stay there; load_state_dict moves the rest to the model.
                ckpt = torch.load(last_path, map_location="cpu", weights_only=True)
                problems = _resume_problems(ckpt, variant, seed, model.config, epochs, cfg)
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
                ckpt = None
        if ckpt is not None:
            model.load_state_dict(ckpt["state_dict"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            set_rng_state(ckpt["rng"])
            history = list(ckpt["history"])
            start, best_val, best_epoch = int(ckpt["epoch"]), float(ckpt["best_val_mae"]), int(ckpt["best_epoch"])
            best_state = ckpt.get("best_state_dict")
            log(f"resuming {variant} seed {seed} from {last_path} after epoch {start}/{epochs}")
        elif resume and not last_path.exists():
            log(f"no {last_path} yet: starting {variant} seed {seed} afresh")

        # The cost is counted here, where torch._dynamo (which the counter needs) is imported
        # anyway, so that evaluation jobs need not pay that import for it.
        extra = dict(variant=variant, seed=seed, dataset=cfg.study.dataset, config=cfg.dumps(),
                     macs=count_macs(model, (1, *train_ds.sample_shape)),
                     normalization=dict(norm.to_dict(), transform=stats["gathers"]["transform"]))
        if start == 0:
            on = f"{device}" if ranks.world_size == 1 else (f"{ranks.world_size} processes ({device.type}, "
                                                             f"{rank_batch} samples per process and step)")
            log(f"training {variant} seed {seed}: {count_params(model):,} parameters, {len(train_ds)} train / "
                f"{len(val_ds)} val samples, {epochs} epochs on {on}")
        done_now = 0
        # A run that stopped on a plateau (train.patience) is finished: resuming it adds nothing.
        plateau = bool(ckpt is not None and ckpt.get("plateau"))
        for epoch in range(start, start if plateau else epochs):
            if stop_after is not None and done_now >= stop_after:
                break
            t0 = time.perf_counter()
            generator.manual_seed(shuffle_seed(seed) + epoch)
            sampler.set_epoch(epoch)
            stats_epoch = train_one_epoch(step_model, train_loader, optimizer, scheduler, loss_fn, device=device,
                                          bf16=bf16, channels_last=channels_last, grad_clip=tc.grad_clip,
                                          progress=progress,
                                          desc=f"{variant} seed {seed} epoch {epoch + 1}/{epochs}")
            if ranks.world_size > 1:
                loss_sum, samples = sum_over_ranks([stats_epoch["loss"] * stats_epoch["samples"],
                                                    stats_epoch["samples"]], device)
                stats_epoch["loss"] = loss_sum / max(samples, 1)
                broadcast_buffers(model)
            val = validate(eval_model, val_loader, device=device, bf16=bf16, channels_last=channels_last)
            seconds = time.perf_counter() - t0
            row = {"epoch": epoch + 1, "train_loss": stats_epoch["loss"], "val_mae": val["mae"],
                   "val_ssim": val["ssim"], "lr": stats_epoch["lr"], "seconds": seconds}
            history.append(row)
            if val["mae"] < best_val:
                best_val, best_epoch = val["mae"], epoch + 1
                best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                if ranks.main:
                    save_checkpoint(best_path, model, epoch=epoch + 1, val_mae=val["mae"], **extra)
            plateau = bool(tc.patience) and epoch + 1 - best_epoch >= tc.patience
            # last.pt carries the best weights too: a resumed run whose model.pt was removed
            # (Snakemake deletes an interrupted job's outputs) can write it again.
            if ranks.main:
                save_checkpoint(last_path, model, epoch=epoch + 1, epochs=epochs, optimizer=optimizer.state_dict(),
                                scheduler=scheduler.state_dict(), rng=rng_state(), history=history,
                                best_val_mae=best_val, best_epoch=best_epoch, best_state_dict=best_state,
                                plateau=plateau, **extra)
                write_history(out / "history.csv", history)
            done_now += 1
            log(f"{variant} seed {seed} epoch {epoch + 1}/{epochs}: train_loss {row['train_loss']:.4f} "
                f"val_mae {row['val_mae']:.4f} val_ssim {row['val_ssim']:.3f} lr {row['lr']:.2e} {seconds:.1f} s")
            if plateau:
                log(f"{variant} seed {seed}: validation MAE has not improved for {tc.patience} epochs "
                    f"(best {best_val:.4f} at epoch {best_epoch}): stopping on the plateau")
                break
        if ranks.main and history and not (out / "history.csv").exists():
            write_history(out / "history.csv", history)
        if ranks.main and best_state is not None and not best_path.exists():
            last_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            model.load_state_dict(best_state)
            save_checkpoint(best_path, model, epoch=best_epoch, val_mae=best_val, **extra)
            model.load_state_dict(last_weights)
            log(f"rewrote {best_path} (epoch {best_epoch}) from the best weights kept in {last_path}")
    epochs_done = len(history)
    return TrainResult(out=out, variant=variant, seed=seed, epochs_done=epochs_done, epochs=epochs,
                       best_epoch=best_epoch, best_val_mae=best_val, finished=epochs_done >= epochs or plateau,
                       history=history, rank=ranks.rank)
