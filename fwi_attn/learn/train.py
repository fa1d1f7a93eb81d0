"""Train one network variant with one seed: ``fwi-attn train``.

Protocol (the same for every variant, so that they compare fairly):

* inputs: normalised gathers ``[B, shot, time, receiver]``; targets: normalised velocity
  ``[B, 1, nz, nx]`` in [-1, 1] (see :mod:`fwi_attn.data.dataset`; constants from ``stats.json``);
* AdamW (``train.lr``, ``train.weight_decay``), loss ``train.loss``: ``l1`` (default), ``l2`` or
  ``l1_ssim`` = L1 + ``ssim_weight`` * (1 - SSIM on [0, 1]); learning-rate schedule
  ``train.scheduler`` stepped per batch (``onecycle``: OneCycleLR peaking at ``lr``; ``cosine``:
  cosine decay from ``lr`` to 0; ``none``: constant); gradient-norm clipping ``train.grad_clip``;
* salt deep supervision (:func:`fwi_attn.learn.losses.make_loss`): with ``train.salt_aux_weight`` ``w > 0`` every UNet
  variant gets salt heads (bottleneck and each decoder level) and the loss adds ``w`` times their
  mean binary cross-entropy against the true salt mask (velocity above
  ``evaluate.salt_threshold``); ``m2f``, whose masked attention follows those heads, always has
  them and uses ``train.m2f_salt_weight`` while ``salt_aux_weight`` is 0
  (:func:`~fwi_attn.learn.losses.salt_weight`), so
  setting ``salt_aux_weight`` to the same value gives every variant m2f's supervision;
* validation every epoch: MAE on OpenFWI's [-1, 1] scale and SSIM on [0, 1]
  (:mod:`fwi_attn.learn.metrics`) of the raw network output, unclipped, as evaluation scores it;
* speed: bf16 autocast (``train.bf16``) on CUDA and on CPUs with native bf16 instructions
  (measured 1.6-1.7x on an AVX512-BF16 EPYC), ``channels_last`` on both (oneDNN's CPU
  convolutions are 1.2-1.6x faster in that layout), optional ``torch.compile``.

Outputs in ``--out DIR``, every file written atomically:

* ``model.pt`` (:data:`fwi_attn.layout.RUN`'s names throughout): best epoch (lowest validation MAE), :func:`fwi_attn.nn.models.save_checkpoint`
  with extras ``variant, seed, epoch, val_mae, dataset, normalization, config``;
* ``last.pt``: the latest epoch plus ``optimizer``, ``scheduler``, ``epoch`` (epochs done),
  ``epochs`` (planned), ``rng`` (torch, CUDA, numpy and Python states), ``history``,
  ``best_val_mae``, ``best_epoch``, ``best_state_dict`` (the best epoch's weights, so that a
  resumed run can rewrite a removed ``model.pt``), ``plateau``: ``--resume`` continues from it to
  bit-identical weights on CPU (:mod:`fwi_attn.learn.resume`);
* ``history.csv``: ``epoch, train_loss, val_mae, val_ssim, lr, seconds`` (one row per epoch;
  ``lr`` is the rate of the epoch's last step, ``seconds`` its wall time, validation included;
  read it with :func:`fwi_attn.io.history.read_history`);
* ``tb/``: TensorBoard event files (``train.tensorboard``; :mod:`fwi_attn.learn.tensorboard`): the
  history's scalars per epoch and, every few epochs, fixed validation models predicted against
  true, in m/s, with the attention maps of variants that have them.

Reproducibility: torch, numpy and ``random`` are seeded from ``--seed`` before the model is
built; the order of training samples in epoch ``e`` is :class:`~torch.utils.data.DistributedSampler`'s
permutation for seed :func:`~fwi_attn.learn.runtime.shuffle_seed` and epoch ``e``, so a resumed run sees the same batches;
deterministic algorithms are on (``train.deterministic``); ``fwi-attn train`` runs ``study.threads``
torch threads.

Several processes (``torchrun --nproc_per_node=N fwi-attn train ...``; ``train.processes`` tells the
workflow to launch it; :mod:`fwi_attn.learn.ddp`): :func:`~fwi_attn.learn.ddp.distributed` finds torchrun's ``RANK``, ``WORLD_SIZE`` and
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
alone writes ``model.pt``, ``last.pt``, ``history.csv``, ``tb/`` and the log lines, and ``--resume`` reads
``last.pt`` on every rank.
"""
from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader

from fwi_attn.data.dataset import ShardDataset, check_survey
from fwi_attn.data.normalize import Normalizer
from fwi_attn.data.sources import split_sources
from fwi_attn.io.history import HISTORY_COLUMNS, write_history
from fwi_attn.io.stats import check_stats, load_stats
from fwi_attn.layout import RUN, default_stats_path
from fwi_attn.learn.ddp import (
    Ranks,
    broadcast_buffers,
    distributed,
    sum_over_ranks,
    torchrun_ranks,
    train_sampler,
    wrap_for_ranks,
)
from fwi_attn.learn.losses import SaltAuxLoss, make_loss, salt_weight
from fwi_attn.learn.metrics import SSIM_WINDOW, mae_torch, ssim_torch
from fwi_attn.learn.resume import Progress, open_last, restore
from fwi_attn.learn.runtime import TrainError, autocast, bf16_supported, seed_everything, shuffle_seed, torch_settings
from fwi_attn.learn.tensorboard import open_board

# The pieces a caller (the CLI, evaluation, a notebook, the tests) finds here, wherever they live.
__all__ = ["HISTORY_COLUMNS", "Ranks", "SaltAuxLoss", "TrainError", "TrainResult", "autocast", "bf16_supported",
           "make_loader", "make_loss", "make_optimizer", "make_scheduler", "model_hyper", "salt_weight",
           "seed_everything", "shuffle_seed", "torch_settings", "torchrun_ranks", "train", "train_one_epoch",
           "validate", "write_history"]



# ----------------------------------------------------------------------------- pieces


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


def _to(x: torch.Tensor, device: torch.device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


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


def train(cfg, variant: str, seed: int, out: str | os.PathLike, *, resume: bool = False,
          epochs: int | None = None, stop_after: int | None = None, stats_path: str | os.PathLike | None = None,
          width: int | None = None, progress: bool = True, tensorboard: bool | None = None,
          log=print) -> TrainResult:
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
        tensorboard: False: no event files, whatever ``train.tensorboard`` says (None: as it says).
        log: called with one summary line per epoch.

    Raises:
        TrainError, StatsError, DatasetError, ShardError, CheckpointError: with messages
        naming the file or setting at fault.
    """
    from fwi_attn.config import resolve_device
    from fwi_attn.nn.models import count_macs, count_params, create_model, list_models, save_checkpoint

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
    from fwi_attn.io.files import check_output

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

        last_path, best_path = out / RUN.last, out / RUN.model
        ckpt = open_last(last_path, resume, variant=variant, seed=seed, model_kwargs=model.config, epochs=epochs,
                         cfg=cfg, log=log)
        if ckpt is not None:
            state = restore(ckpt, model, optimizer, scheduler)
            log(f"resuming {variant} seed {seed} from {last_path} after epoch {state.start}/{epochs}")
        else:
            state = Progress()

        # The cost is counted here, where torch._dynamo (which the counter needs) is imported
        # anyway, so that evaluation jobs need not pay that import for it.
        extra = dict(variant=variant, seed=seed, dataset=cfg.study.dataset, config=cfg.dumps(),
                     macs=count_macs(model, (1, *train_ds.sample_shape)),
                     normalization=dict(norm.to_dict(), transform=stats["gathers"]["transform"]))
        if state.start == 0:
            on = f"{device}" if ranks.world_size == 1 else (f"{ranks.world_size} processes ({device.type}, "
                                                             f"{rank_batch} samples per process and step)")
            log(f"training {variant} seed {seed}: {count_params(model):,} parameters, {len(train_ds)} train / "
                f"{len(val_ds)} val samples, {epochs} epochs on {on}")
        image_every = int(tc.get("tensorboard", 0) or 0)
        board = open_board(ranks.main and image_every > 0 and tensorboard is not False, out, val_ds, norm,
                           image_every=image_every, start=state.start, device=device, channels_last=channels_last)
        try:
            run_epochs(state, model, step_model, eval_model, train_loader, val_loader, optimizer, scheduler, loss_fn,
                       board=board, generator=generator, sampler=sampler, seed=seed, epochs=epochs,
                       stop_after=stop_after, tc=tc, ranks=ranks, device=device, bf16=bf16,
                       channels_last=channels_last, progress=progress, log=log,
                       save_best=lambda epoch, val_mae: save_checkpoint(best_path, model, epoch=epoch,
                                                                         val_mae=val_mae, **extra),
                       save_last=lambda epoch: save_checkpoint(
                           last_path, model, **state.last_checkpoint(optimizer, scheduler, epoch, epochs), **extra),
                       history_path=out / RUN.history, variant=variant)
        finally:
            board.close()
        if ranks.main and state.history and not (out / RUN.history).exists():
            write_history(out / RUN.history, state.history)
        if ranks.main and state.best_state is not None and not best_path.exists():
            last_weights = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            model.load_state_dict(state.best_state)
            save_checkpoint(best_path, model, epoch=state.best_epoch, val_mae=state.best_val, **extra)
            model.load_state_dict(last_weights)
            log(f"rewrote {best_path} (epoch {state.best_epoch}) from the best weights kept in {last_path}")
    epochs_done = len(state.history)
    return TrainResult(out=out, variant=variant, seed=seed, epochs_done=epochs_done, epochs=epochs,
                       best_epoch=state.best_epoch, best_val_mae=state.best_val,
                       finished=epochs_done >= epochs or state.plateau, history=state.history, rank=ranks.rank)


def run_epochs(state: Progress, model: nn.Module, step_model: nn.Module, eval_model: nn.Module, train_loader,
               val_loader, optimizer, scheduler, loss_fn, *, board, generator: torch.Generator, sampler, seed: int,
               epochs: int, stop_after: int | None, tc, ranks: Ranks, device: torch.device, bf16: bool,
               channels_last: bool, progress: bool, log, save_best, save_last, history_path: Path,
               variant: str) -> None:
    """The epochs of :func:`train` from ``state.start``: train, validate, keep the best, save, log.

    Updates ``state`` in place; ``save_best(epoch, val_mae)`` and ``save_last(epoch)`` write
    ``model.pt`` and ``last.pt`` (rank 0 only). Stops after ``stop_after`` epochs of this call,
    at ``epochs``, or on a validation plateau (``tc.patience``); a run that stopped on a
    plateau is finished and resuming it adds nothing.
    """
    done_now = 0
    for epoch in range(state.start, state.start if state.plateau else epochs):
        if stop_after is not None and done_now >= stop_after:
            break
        t0 = time.perf_counter()
        generator.manual_seed(shuffle_seed(seed) + epoch)
        sampler.set_epoch(epoch)
        stats_epoch = train_one_epoch(step_model, train_loader, optimizer, scheduler, loss_fn, device=device,
                                      bf16=bf16, channels_last=channels_last, grad_clip=tc.grad_clip,
                                      progress=progress, desc=f"{variant} seed {seed} epoch {epoch + 1}/{epochs}")
        if ranks.world_size > 1:
            loss_sum, samples = sum_over_ranks([stats_epoch["loss"] * stats_epoch["samples"],
                                                stats_epoch["samples"]], device)
            stats_epoch["loss"] = loss_sum / max(samples, 1)
            broadcast_buffers(model)
        val = validate(eval_model, val_loader, device=device, bf16=bf16, channels_last=channels_last)
        seconds = time.perf_counter() - t0
        row = {"epoch": epoch + 1, "train_loss": stats_epoch["loss"], "val_mae": val["mae"],
               "val_ssim": val["ssim"], "lr": stats_epoch["lr"], "seconds": seconds}
        state.history.append(row)
        if state.improve(model, val["mae"], epoch + 1) and ranks.main:
            save_best(epoch + 1, val["mae"])
        state.plateau = bool(tc.patience) and epoch + 1 - state.best_epoch >= tc.patience
        # last.pt carries the best weights too: a resumed run whose best checkpoint was removed
        # (Snakemake deletes an interrupted job's outputs) can write it again.
        if ranks.main:
            save_last(epoch + 1)
            write_history(history_path, state.history)
        done_now += 1
        log(f"{variant} seed {seed} epoch {epoch + 1}/{epochs}: train_loss {row['train_loss']:.4f} "
            f"val_mae {row['val_mae']:.4f} val_ssim {row['val_ssim']:.3f} lr {row['lr']:.2e} {seconds:.1f} s")
        board.epoch(row, model, last=epoch + 1 == epochs or state.plateau)
        if state.plateau:
            log(f"{variant} seed {seed}: validation MAE has not improved for {tc.patience} epochs "
                f"(best {state.best_val:.4f} at epoch {state.best_epoch}): stopping on the plateau")
            break
