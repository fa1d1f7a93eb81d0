"""Predict a test split and score it: ``fwi-attn evaluate``.

Two modes, scored identically (:func:`fwi_attn.learn.metrics.compute_metrics`):

* ``--checkpoint DIR/model.pt``: the trained network. Inputs are normalised with the
  constants stored in the checkpoint (those it was trained with), so a checkpoint is
  self-contained; the model's input and grid sizes must match the test data.
* ``--baseline mean``: every test sample is predicted as the train split's mean velocity
  model (``mean_velocity`` of ``stats.json``). A network that does not beat it has not learned.

Outputs in ``--out DIR`` (formats in ``docs/architecture.md``), written atomically:

* ``predictions.h5`` (schema ``fwi-attn-predictions/1``): ``prediction`` and ``target``
  float32 ``[n, nz, nx]`` in m/s (predictions clipped to [vmin, vmax]), ``index`` int64 ``[n]``;
  attributes ``schema, variant, seed, dataset, split, shards, checkpoint``. The baseline has
  ``variant="mean"``, ``seed=-1`` and ``checkpoint=""`` (HDF5 attributes cannot be null).
* ``metrics.json``: ``variant, seed, dataset, split, n_samples, n_params, macs`` (per sample,
  one forward pass), ``time_per_sample_s`` (forward passes only, after a warm-up batch),
  ``mean`` and ``per_sample`` of every metric, plus ``checkpoint``, ``checkpoint_sha256`` (the
  identity of the model scored: the report checks it against the run's ``model.pt``), ``epoch`` and
  ``settings`` (vmin, vmax, salt_threshold, boundary_tolerance). The baseline has
  ``"variant": "mean"``, ``"seed": null``, ``n_params`` and ``macs`` 0.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch

from fwi_attn.data.dataset import Normalizer, ShardDataset, check_survey, load_stats, mean_velocity, split_sources
from fwi_attn.layout import default_stats_path
from fwi_attn.learn.metrics import compute_metrics, summarize, to_json_lists
from fwi_attn.data.store import file_sha256, run_folder_identity, write_json, write_predictions

class EvaluateError(ValueError):
    """The checkpoint does not fit the data, or the inputs of an evaluation are inconsistent."""


def check_fits(model_kwargs: dict, data: ShardDataset, checkpoint: str | os.PathLike) -> None:
    """Refuse a checkpoint whose input or grid size differs from the data's."""
    want = data.model_shape()
    got = {k: model_kwargs.get(k) for k in want}
    if got != want:
        raise EvaluateError(
            f"checkpoint {checkpoint} was built for gathers [{got['in_shots']}, {got['nt']}, {got['n_receivers']}] "
            f"-> grid {got['nz']}x{got['nx']}, but {data.sources[0].name} holds gathers "
            f"[{want['in_shots']}, {want['nt']}, {want['n_receivers']}] -> grid {want['nz']}x{want['nx']}: "
            f"evaluate it with the config (and data) it was trained on")


@torch.no_grad()
def predict(model: torch.nn.Module, data: ShardDataset, *, batch_size: int, device: torch.device,
            channels_last: bool = False, progress: bool = False) -> tuple[np.ndarray, float]:
    """Run ``model`` over every sample of ``data`` in order, in float32 (metrics should
    measure the network, not bf16 rounding, even where training used bf16 autocast).

    Returns:
        ``(prediction, seconds_per_sample)``: normalised predictions float32 ``[n, nz, nx]``
        (unclipped), and the mean forward-pass time per sample (data loading excluded; the
        first batch is a warm-up and runs twice).
    """
    from torch.utils.data import DataLoader

    model.eval().to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, pin_memory=device.type == "cuda")
    out = np.empty((len(data), *data.grid), dtype=np.float32)
    seconds, i, bar = 0.0, 0, None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(data), unit="sample", desc="predicting", leave=False)
    for b, (x, _) in enumerate(loader):
        x = x.to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        if b == 0:
            model(x)  # warm-up: first-call allocations and kernel selection
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        y = model(x)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds += time.perf_counter() - t0
        out[i:i + len(x)] = y.float()[:, 0].cpu().numpy()
        i += len(x)
        if bar is not None:
            bar.update(len(x))
    if bar is not None:
        bar.close()
    return out, seconds / max(len(data), 1)


def _score(cfg, norm: Normalizer, prediction_ms: np.ndarray, target_ms: np.ndarray) -> tuple[dict, dict]:
    ev = cfg.evaluate
    per = compute_metrics(prediction_ms, target_ms, norm.vmin, norm.vmax, ev.salt_threshold, ev.boundary_tolerance)
    return summarize(per), to_json_lists(per)


def _write_outputs(cfg, out: Path, *, variant: str, seed, data: ShardDataset, split: str, pred_ms: np.ndarray,
                   target_ms: np.ndarray, norm: Normalizer, checkpoint: str, n_params: int, macs: int,
                   time_per_sample: float, epoch) -> dict:
    dataset = cfg.study.dataset
    write_predictions(out / "predictions.h5", pred_ms, target_ms, np.arange(len(target_ms)), variant=variant,
                      seed=seed, dataset=dataset, split=split, shards=data.paths, checkpoint=checkpoint)
    mean, per = _score(cfg, norm, pred_ms, target_ms)
    metrics = {
        "variant": variant, "seed": seed, "dataset": dataset, "split": split, "n_samples": len(data),
        "n_params": int(n_params), "macs": int(macs), "time_per_sample_s": float(time_per_sample),
        "mean": mean, "per_sample": per,
        "checkpoint": checkpoint or None, "checkpoint_sha256": file_sha256(checkpoint) if checkpoint else None,
        "epoch": epoch,
        "settings": {"vmin": norm.vmin, "vmax": norm.vmax, "salt_threshold": cfg.evaluate.salt_threshold,
                     "boundary_tolerance": cfg.evaluate.boundary_tolerance},
    }
    write_json(out / "metrics.json", metrics)
    return metrics


def evaluate_checkpoint(cfg, checkpoint: str | os.PathLike, out: str | os.PathLike, *, split: str = "test",
                        stats_path: str | os.PathLike | None = None, progress: bool = True) -> dict:
    """Predict ``split`` with a trained checkpoint; write ``predictions.h5`` and ``metrics.json``.

    Returns:
        The ``metrics.json`` dictionary.

    Raises:
        EvaluateError: the checkpoint's input or grid size differs from the data's.
        CheckpointError / FileNotFoundError: unreadable or missing checkpoint.
        DatasetError: data that do not match the config's survey.
    """
    from fwi_attn.nn.models import count_macs, count_params, load_model
    from fwi_attn.config import resolve_device
    from fwi_attn.learn.train import torch_settings

    out = Path(out)
    model, extra = load_model(checkpoint)
    variant = extra.get("variant", getattr(model, "variant", "?"))
    named = run_folder_identity(out)
    if named is not None and named != (variant, extra.get("seed")):
        raise EvaluateError(f"--out {out} is the folder of {named[0]} seed {named[1]}, but {checkpoint} holds "
                            f"{variant} seed {extra.get('seed')}: its results would be filed under another run; "
                            f"use {out.parent.parent / variant / ('seed' + str(extra.get('seed')))}")
    data = ShardDataset(split_sources(cfg, split))
    check_fits(model.config, data, checkpoint)
    check_survey(cfg, data)
    if "normalization" in extra:
        norm = Normalizer.from_dict(extra["normalization"])
    else:  # a checkpoint from elsewhere: the dataset's stats
        norm = Normalizer.from_stats(load_stats(stats_path or default_stats_path(cfg)))
    data.normalizer = norm
    device = resolve_device(cfg.study.device)
    batch = cfg.evaluate.batch_size or cfg.train.batch_size
    with torch_settings(cfg.study.threads, False, device):
        n_params = count_params(model)
        macs = extra.get("macs") or count_macs(model, (1, *data.sample_shape))
        pred, per_sample_s = predict(model, data, batch_size=batch, device=device,
                                     channels_last=bool(cfg.train.channels_last), progress=progress)
    pred_ms = norm.velocity_inverse(pred, clip=True).astype(np.float32)
    target_ms = data.velocities()
    return _write_outputs(cfg, out, variant=variant, seed=extra.get("seed"), data=data, split=split,
                          pred_ms=pred_ms, target_ms=target_ms, norm=norm, checkpoint=str(checkpoint),
                          n_params=n_params, macs=macs, time_per_sample=per_sample_s, epoch=extra.get("epoch"))


def evaluate_baseline(cfg, out: str | os.PathLike, *, kind: str = "mean", split: str = "test",
                      stats_path: str | os.PathLike | None = None) -> dict:
    """Score the mean-model baseline (the train split's mean velocity for every sample).

    Raises:
        StatsError: no ``stats.json`` (it holds the mean model) or one of another grid.
    """
    if kind != "mean":
        raise EvaluateError(f"unknown baseline {kind!r}; valid: mean")
    if run_folder_identity(out) is not None:
        raise EvaluateError(f"--out {out} is a training run's folder; the mean-model baseline goes to "
                            f"<study>/mean, not under a run")
    stats_path = Path(stats_path) if stats_path else default_stats_path(cfg)
    stats = load_stats(stats_path)
    norm = Normalizer.from_stats(stats)
    data = ShardDataset(split_sources(cfg, split))
    check_survey(cfg, data)
    mean = mean_velocity(stats)
    if mean.shape != data.grid:
        raise EvaluateError(f"{stats_path}: mean model is {mean.shape[0]}x{mean.shape[1]} but "
                            f"{data.sources[0].name} has a {data.grid[0]}x{data.grid[1]} grid; rerun `fwi-attn stats`")
    t0 = time.perf_counter()
    pred_ms = np.broadcast_to(np.clip(mean, norm.vmin, norm.vmax), (len(data), *data.grid)).astype(np.float32)
    per_sample_s = (time.perf_counter() - t0) / max(len(data), 1)
    return _write_outputs(cfg, Path(out), variant="mean", seed=None, data=data, split=split, pred_ms=pred_ms,
                          target_ms=data.velocities(), norm=norm, checkpoint="", n_params=0, macs=0,
                          time_per_sample=per_sample_s, epoch=None)
