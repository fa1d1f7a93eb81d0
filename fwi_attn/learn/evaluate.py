"""Predict a test split and score it: ``fwi-attn evaluate``.

Three modes, scored identically (:func:`fwi_attn.learn.metrics.compute_metrics`), on the raw
prediction (OpenFWI's convention; no clipping):

* ``--checkpoint DIR/model.pt``: the trained network, through a
  :class:`fwi_attn.learn.inference.Predictor`: inputs are normalised with the constants stored in
  the checkpoint (those it was trained with), so a checkpoint is self-contained; a ``--stats``
  given as well is checked against them (a mismatch is an error). The model's input and grid
  sizes must match the test data.
* ``--baseline mean``: every test sample is predicted as the train split's mean velocity
  model (``mean_velocity`` of ``stats.json``). A network that does not beat it has not learned.
* ``--predictions FILE``: a predictions file of ``fwi-attn predict`` scored against the true
  models it holds (its ``target``, the velocity of the shards it predicted); only ``metrics.json``.

Either of the first two scores the study's test (or val) split, or, with ``test_set=(NAME,
FOLDER)`` (``--test-set NAME=FOLDER``), a test set made by ``fwi-attn testset``
(:func:`fwi_attn.data.sources.test_set_sources`); then ``dataset`` in both files is ``NAME`` and
``split`` is ``test``.

Outputs in ``--out DIR`` (names from :data:`fwi_attn.layout.RUN`; formats in
``docs/architecture.md``), written atomically:

* ``predictions.h5`` (:mod:`fwi_attn.io.predictions`): ``prediction`` and ``target``
  float32 ``[n, nz, nx]`` in m/s (the raw network output, unclipped), ``index`` int64 ``[n]``;
  attributes ``schema, variant, seed, dataset, split, shards, checkpoint``. The baseline has
  ``variant="mean"``, ``seed=-1`` and ``checkpoint=""`` (HDF5 attributes cannot be null).
* ``metrics.json`` (built by :func:`metrics_record` alone): ``variant, seed, dataset, split,
  n_samples``; for a checkpoint or the baseline ``n_params, macs`` (per sample, one forward pass)
  and ``time_per_sample_s`` (forward passes only, after a warm-up batch); ``mean`` (over samples)
  and ``per_sample`` of every metric, ``pooled`` (the whole test set's MAE, MSE, RMSE and SSIM as
  OpenFWI's tables give them, :func:`fwi_attn.learn.metrics.pooled`), ``clipped`` (``mean`` and
  ``pooled`` again with predictions clipped to [vmin, vmax]: the second view); then where the
  predictions came from: ``checkpoint``, ``checkpoint_sha256`` (the identity of the model scored:
  the report checks it against the run's ``model.pt``), ``epoch`` and ``model`` (the network as
  built: its name and constructor arguments, e.g. the attention levels after the registry's caps;
  null for the baseline), or for ``--predictions`` the file's path and checkpoint; last
  ``settings`` (vmin, vmax, salt_threshold, boundary_tolerance). The baseline has
  ``"variant": "mean"``, ``"seed": null``, ``n_params`` and ``macs`` 0.
* ``attention.h5`` (checkpoint mode only; :mod:`fwi_attn.io.attention`): the network's spatial
  attention maps on the showcase sample (:func:`showcase_index`), that sample's index and true
  velocity. The comparison figures draw it without loading a network.
* ``attention_salt.json`` (checkpoint mode only; schema ``fwi-attn-attention-salt/1``,
  :func:`fwi_attn.io.attention_salt.read_attention_salt`): per spatial map (attention and salt heads), the ROC AUC of the
  map as a detector of salt and of salt-boundary cells on every sample of the split
  (:func:`attention_salt_scores`); ``levels`` is empty for a network without a spatial map.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from fwi_attn.data.dataset import ShardDataset, check_survey
from fwi_attn.data.normalize import Normalizer, VelocityScale
from fwi_attn.data.sources import split_sources, test_set_sources
from fwi_attn.io.attention import write_attention
from fwi_attn.io.attention_salt import ATTENTION_SALT_SCHEMA
from fwi_attn.io.files import file_sha256, write_json
from fwi_attn.io.predictions import read_predictions, write_predictions
from fwi_attn.io.run_json import write_result
from fwi_attn.io.shard import read_shard
from fwi_attn.io.stats import load_stats, mean_velocity
from fwi_attn.layout import RUN, default_stats_path, parse_run_dir
from fwi_attn.learn.metrics import compute_metrics, pooled, summarize, to_json_lists
from fwi_attn.provenance import provenance


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


def showcase_index(target_ms: np.ndarray, salt_threshold: float) -> int:
    """Row of the sample the attention and data-fit figures show: the one with the largest salt
    fraction (velocity above ``salt_threshold`` m/s), the first of equals.

    It depends on the true models ``[n, nz, nx]`` (m/s) alone, so every run of a study (and
    ``fwi-attn evaluate`` and ``fwi-attn physics`` alike) picks the same sample.
    """
    target_ms = np.asarray(target_ms)
    if target_ms.ndim != 3 or not len(target_ms):
        raise EvaluateError(f"showcase_index needs true models [n, nz, nx] with n >= 1, got shape "
                            f"{list(target_ms.shape)}")
    salt = (target_ms > salt_threshold).mean(axis=(1, 2))
    return int(np.argmax(salt))


# ----------------------------------------------------------------------------- attention_salt.json



def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` as a detector of ``labels``, tie-aware.

    The Mann-Whitney form: with average ranks ``R`` of all scores (ties share their mean rank),
    ``AUC = (sum of R over positives - P (P + 1) / 2) / (P N)`` for ``P`` positives and ``N``
    negatives: the probability that a random positive scores above a random negative, ties
    counting one half. 1: every positive above every negative; 0.5: no better than chance.

    Args:
        scores: any shape; labels: bool of the same shape.

    Returns:
        The AUC in [0, 1], or None when either class is empty.
    """
    s, y = np.asarray(scores, np.float64).ravel(), np.asarray(labels, bool).ravel()
    if s.shape != y.shape:
        raise EvaluateError(f"roc_auc: {s.size} scores for {y.size} labels")
    pos = int(y.sum())
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        return None
    # Average 1-based ranks (scipy.stats.rankdata's default) without importing scipy.stats
    # (half a second per evaluate job): a value's equals span ranks cum - count + 1 .. cum.
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    cum = np.cumsum(counts)
    ranks = (cum - (counts - 1) / 2.0)[inverse]
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def map_on_grid(amap: np.ndarray, pad: tuple[int, int, int, int], nz: int, nx: int) -> np.ndarray:
    """An attention map on the velocity grid: ``[h, w]`` on a level of the network's padded grid
    -> float64 ``[nz, nx]``.

    The map is upsampled bilinearly (cell centres aligned: ``align_corners=False``) to the padded
    grid ``[nz + top + bottom, nx + left + right]`` and cropped by ``pad`` = ``(left, right,
    top, bottom)`` cells, so that every velocity cell gets one score and counts once.
    """
    import torch

    left, right, top, bottom = pad
    full = (nz + top + bottom, nx + left + right)
    x = torch.as_tensor(np.asarray(amap, np.float64))[None, None]
    up = torch.nn.functional.interpolate(x, size=full, mode="bilinear", align_corners=False)[0, 0].numpy()
    return up[top:top + nz, left:left + nx]


def attention_salt_scores(maps: Iterable[dict[str, np.ndarray]], target_ms: np.ndarray,
                          pad: tuple[int, int, int, int], salt_threshold: float) -> dict[str, dict]:
    """Per map, per sample: the ROC AUC of the map as a detector of salt and of the salt boundary.

    Args:
        maps: per sample ``{module path: [h, w]}`` (:meth:`Predictor.attention`), one dict per
            row of ``target_ms``, every dict with the same keys; any iterable (a generator
            keeps only one sample's maps in memory).
        target_ms: true models ``[n, nz, nx]`` (m/s).
        pad: the network's ``(left, right, top, bottom)`` padding (:attr:`Predictor.pad`).
        salt_threshold: m/s; salt cells are ``target > salt_threshold``, boundary cells the salt
            cells with a non-salt 4-neighbour (:func:`fwi_attn.learn.metrics.boundary`; every
            other cell, salt interior or sediment, is a negative).

    Returns:
        ``{module path: {"kind", "shape", "stride", "salt_auc", "boundary_auc", "mean_salt_auc",
        "mean_boundary_auc"}}`` in forward order: ``kind`` is ``"salt_head"`` for a salt head's
        predicted probability (``salt_heads.<level>``), else ``"attention"``; ``shape`` ``[h, w]``
        of the map; ``stride`` the padded grid's cells per map cell (2 ** level); the AUC lists
        hold one value per sample, None where the sample has no salt or no non-salt (no
        boundary); means over the samples that have a value (None if none).

    Raises:
        EvaluateError: not one dict of maps per true model.
    """
    from fwi_attn.learn.metrics import boundary

    target_ms = np.asarray(target_ms)
    n, nz, nx = target_ms.shape
    out: dict[str, dict] = {}
    count = 0
    for k, sample in enumerate(maps):
        count += 1
        if k >= n:
            continue  # counted for the message below
        salt = target_ms[k] > salt_threshold
        edge = boundary(salt)
        for key, amap in sample.items():
            if key not in out:
                h, w = amap.shape
                out[key] = {"kind": "salt_head" if key.startswith("salt_heads.") else "attention", "shape": [h, w],
                            "stride": int(round((nz + pad[2] + pad[3]) / h)), "salt_auc": [], "boundary_auc": []}
            on_grid = map_on_grid(amap, pad, nz, nx)
            out[key]["salt_auc"].append(roc_auc(on_grid, salt))
            out[key]["boundary_auc"].append(roc_auc(on_grid, edge))
    if count != n or any(len(v["salt_auc"]) != n for v in out.values()):
        raise EvaluateError(f"attention maps of {count} samples for {n} true models")
    for v in out.values():
        v["mean_salt_auc"], v["mean_boundary_auc"] = _mean_or_none(v["salt_auc"]), _mean_or_none(v["boundary_auc"])
    return out


def _mean_or_none(values: list) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


# ----------------------------------------------------------------------------- scoring


def score(cfg, scale: VelocityScale, prediction_ms: np.ndarray, target_ms: np.ndarray) -> dict:
    """The scores of raw predictions ``[n, nz, nx]`` (m/s) against the truth: metrics.json's ``mean``,
    ``pooled``, ``per_sample`` and ``clipped`` entries."""
    ev = cfg.evaluate
    args = (prediction_ms, target_ms, scale.vmin, scale.vmax, ev.salt_threshold, ev.boundary_tolerance)
    raw, clipped = compute_metrics(*args), compute_metrics(*args, clip=True)
    return {"mean": summarize(raw), "pooled": pooled(raw), "per_sample": to_json_lists(raw),
            "clipped": {"mean": summarize(clipped), "pooled": pooled(clipped)}}


def _open_data(cfg, split: str, test_set: tuple[str, str | os.PathLike] | None) -> tuple[ShardDataset, str, str]:
    """The raw data to score and its labels ``(dataset, split)``: the study's split, or a named test set."""
    if test_set is None:
        data, labels = ShardDataset(split_sources(cfg, split)), (cfg.study.dataset, split)
    else:
        from fwi_attn.data.testset import check_complete

        name, folder = test_set
        if any(Path(folder).glob("*.h5")):  # a `fwi-attn testset` set (an OpenFWI .npy folder has no summary)
            check_complete(folder)
        data, labels = ShardDataset(test_set_sources(cfg, name, folder)), (name, "test")
    check_survey(cfg, data)
    return data, *labels


def metrics_record(cfg, scale: VelocityScale, prediction_ms: np.ndarray, target_ms: np.ndarray, *, labels: dict,
                   cost: dict, origin: dict) -> dict:
    """The ``metrics.json`` dictionary, the one place it is built (module docstring).

    Args:
        scale: the velocity bounds the metrics use (``geology.vmin``/``vmax``).
        prediction_ms, target_ms: ``[n, nz, nx]`` m/s, predictions as the network gave them.
        labels: ``variant, seed, dataset, split, n_samples``.
        cost: ``n_params, macs, time_per_sample_s`` (empty for a predictions file).
        origin: where the predictions came from (``checkpoint``, ``checkpoint_sha256``, ``epoch``,
            ``model``; or ``predictions``, ``checkpoint``).
    """
    ev = cfg.evaluate
    return {**labels, **cost, **score(cfg, scale, prediction_ms, target_ms), **origin,
            "settings": {"vmin": scale.vmin, "vmax": scale.vmax, "salt_threshold": ev.salt_threshold,
                         "boundary_tolerance": ev.boundary_tolerance},
            "provenance": provenance(cfg)}


def _write_outputs(cfg, out: Path, *, variant: str, seed, data: ShardDataset, split: str, pred_ms: np.ndarray,
                   target_ms: np.ndarray, norm: Normalizer, checkpoint: str, n_params: int, macs: int,
                   time_per_sample: float, epoch, model: dict | None = None, dataset: str | None = None) -> dict:
    dataset = dataset or cfg.study.dataset
    write_predictions(out / RUN.predictions, pred_ms, target_ms, np.arange(len(target_ms)), variant=variant,
                      seed=seed, dataset=dataset, split=split, shards=data.paths, checkpoint=checkpoint)
    metrics = metrics_record(
        cfg, norm.velocity_scale, pred_ms, target_ms,
        labels={"variant": variant, "seed": seed, "dataset": dataset, "split": split, "n_samples": len(data)},
        cost={"n_params": int(n_params), "macs": int(macs), "time_per_sample_s": float(time_per_sample)},
        origin={"checkpoint": checkpoint or None,
                "checkpoint_sha256": file_sha256(checkpoint) if checkpoint else None, "epoch": epoch, "model": model})
    write_result(out / RUN.metrics, metrics, RUN.metrics)
    return metrics


def evaluate_checkpoint(cfg, checkpoint: str | os.PathLike, out: str | os.PathLike, *, split: str = "test",
                        stats_path: str | os.PathLike | None = None, progress: bool = True,
                        test_set: tuple[str, str | os.PathLike] | None = None) -> dict:
    """Predict ``split`` with a trained checkpoint; write ``predictions.h5``, ``metrics.json``,
    ``attention.h5`` and ``attention_salt.json``.

    ``attention_salt.json``: ``{"schema": "fwi-attn-attention-salt/1", "variant", "seed",
    "dataset", "split", "checkpoint", "n_samples", "indices" (the split's sample indices, in the
    order of every AUC list), "salt_threshold" (m/s), "grid" (how maps meet the velocity grid),
    "spatial" (false for a network without a spatial map: channel attention only, or none),
    "note", "levels": {module path: {"kind", "shape", "stride", "salt_auc", "boundary_auc",
    "mean_salt_auc", "mean_boundary_auc"}} (:func:`attention_salt_scores`), "seconds" (the
    maps' forward passes and their scoring)}``. Every sample's maps come from one forward pass
    of its own (:meth:`Predictor.attention`); the showcase sample's are ``attention.h5``'s.

    Args:
        stats_path: a ``stats.json`` to check the checkpoint's normalisation against; a checkpoint
            without a record of it (from elsewhere) uses this file, by default
            ``<data_dir>/<dataset>/stats.json``.
        test_set: ``(name, folder)`` of a test set to score instead of ``split``.

    Returns:
        The ``metrics.json`` dictionary.

    Raises:
        EvaluateError: the checkpoint's input or grid size differs from the data's, or ``--out`` is
            another run's folder.
        InferenceError: ``stats_path`` is not the normalisation the checkpoint was trained with.
        CheckpointError / FileNotFoundError: unreadable or missing checkpoint.
        DatasetError: data that do not match the config's survey.
    """
    from torch.utils.data import DataLoader

    from fwi_attn.config import resolve_device
    from fwi_attn.learn.inference import Predictor
    from fwi_attn.learn.train import torch_settings
    from fwi_attn.nn.layers import AttnProbe
    from fwi_attn.nn.models import count_macs, count_params

    out = Path(out)
    device = resolve_device(cfg.study.device)
    predictor = Predictor.load(checkpoint, stats_path, fallback_stats=default_stats_path(cfg), device=device,
                               channels_last=bool(cfg.train.channels_last))
    model, extra = predictor.model, predictor.extra
    variant = extra.get("variant", getattr(model, "variant", "?"))
    named = parse_run_dir(out)
    if named is not None and named != (variant, extra.get("seed")):
        raise EvaluateError(f"--out {out} is the folder of {named[0]} seed {named[1]}, but {checkpoint} holds "
                            f"{variant} seed {extra.get('seed')}: its results would be filed under another run; "
                            f"use {out.parent.parent / variant / ('seed' + str(extra.get('seed')))}")
    data, dataset, split = _open_data(cfg, split, test_set)  # raw: the predictor normalises
    check_fits(model.config, data, checkpoint)
    norm = predictor.normalizer
    batch = cfg.evaluate.batch_size or cfg.train.batch_size
    loader = DataLoader(data, batch_size=batch, shuffle=False, pin_memory=device.type == "cuda")
    target_ms = data.velocities()
    k = showcase_index(target_ms, cfg.evaluate.salt_threshold)
    with torch_settings(False, device):
        n_params = count_params(model)
        macs = extra.get("macs") or count_macs(model, (1, *data.sample_shape))
        pred_ms, per_sample_s = predictor.predict_batches((x for x, _ in loader), len(data), timed=True,
                                                          progress=progress, clip=False)
        t0 = time.perf_counter()
        # Every test sample's maps, one forward pass each, scored as they come; the showcase's
        # go to attention.h5.
        show: dict[str, np.ndarray] = {}

        def each_sample():
            if not any(isinstance(m, AttnProbe) for m in model.modules()):  # no map to capture (se, none)
                yield from ({} for _ in range(len(target_ms)))
                return
            for j, sample in enumerate(m for x, _ in loader for m in predictor.attention(x)):
                if j == k:
                    show.update(sample)
                yield sample

        scores = attention_salt_scores(each_sample(), target_ms, predictor.pad, cfg.evaluate.salt_threshold)
    write_json(out / RUN.attention_salt, {
        "schema": ATTENTION_SALT_SCHEMA, "variant": variant, "seed": extra.get("seed"), "dataset": dataset,
        "split": split, "checkpoint": str(checkpoint), "n_samples": len(target_ms),
        "indices": list(range(len(target_ms))), "salt_threshold": cfg.evaluate.salt_threshold,
        "grid": "each map upsampled bilinearly (align_corners=False) to the padded velocity grid, then cropped",
        "spatial": bool(scores),
        "note": None if scores else "no spatial attention map (channel attention only, or no attention)",
        "levels": scores, "seconds": time.perf_counter() - t0})
    write_attention(out / RUN.attention, show, velocity=target_ms[k], index=k, pad=predictor.pad,
                    variant=variant, seed=extra.get("seed"), dataset=dataset, split=split, checkpoint=str(checkpoint),
                    salt_threshold=cfg.evaluate.salt_threshold)
    return _write_outputs(cfg, out, variant=variant, seed=extra.get("seed"), data=data, split=split,
                          pred_ms=pred_ms, target_ms=target_ms, norm=norm, checkpoint=str(checkpoint),
                          n_params=n_params, macs=macs, time_per_sample=per_sample_s, epoch=extra.get("epoch"),
                          model={"name": variant, "kwargs": dict(model.config)}, dataset=dataset)


def evaluate_baseline(cfg, out: str | os.PathLike, *, kind: str = "mean", split: str = "test",
                      stats_path: str | os.PathLike | None = None,
                      test_set: tuple[str, str | os.PathLike] | None = None) -> dict:
    """Score the mean-model baseline (the train split's mean velocity for every sample) on
    ``split``, or on the test set ``test_set = (name, folder)``.

    Raises:
        StatsError: no ``stats.json`` (it holds the mean model) or one of another grid.
    """
    if kind != "mean":
        raise EvaluateError(f"unknown baseline {kind!r}; valid: mean")
    if parse_run_dir(out) is not None:
        raise EvaluateError(f"--out {out} is a training run's folder; the mean-model baseline goes to "
                            f"<study>/mean, not under a run")
    stats_path = Path(stats_path) if stats_path else default_stats_path(cfg)
    stats = load_stats(stats_path)
    norm = Normalizer.from_stats(stats)
    data, dataset, split = _open_data(cfg, split, test_set)
    mean = mean_velocity(stats)
    if mean.shape != data.grid:
        raise EvaluateError(f"{stats_path}: mean model is {mean.shape[0]}x{mean.shape[1]} but "
                            f"{data.sources[0].name} has a {data.grid[0]}x{data.grid[1]} grid; rerun `fwi-attn stats`")
    t0 = time.perf_counter()
    pred_ms = np.broadcast_to(mean, (len(data), *data.grid)).astype(np.float32)
    per_sample_s = (time.perf_counter() - t0) / max(len(data), 1)
    return _write_outputs(cfg, Path(out), variant="mean", seed=None, data=data, split=split, pred_ms=pred_ms,
                          target_ms=data.velocities(), norm=norm, checkpoint="", n_params=0, macs=0,
                          time_per_sample=per_sample_s, epoch=None, dataset=dataset)


def evaluate_predictions(cfg, predictions: str | os.PathLike, out: str | os.PathLike) -> dict:
    """Score a predictions file (``fwi-attn predict``) against the true models it holds; write
    ``metrics.json`` in ``out``, labelled with the file's variant, seed and split and the
    dataset recorded in its first shard (the set's name for a ``fwi-attn testset`` set).

    Metrics use the config's ``geology.vmin``/``vmax`` and ``evaluate`` settings, as for a study's runs.

    Raises:
        FileNotFoundError / ShardError: a missing or unreadable predictions file.
    """
    pred = read_predictions(predictions)
    dataset = ""
    if pred.shards and pred.shards[0].is_file():
        dataset = str(read_shard(pred.shards[0], load=False).attrs.get("dataset", ""))
    seed = int(pred.attrs.get("seed", -1))
    checkpoint = str(pred.attrs.get("checkpoint", ""))
    metrics = metrics_record(
        cfg, VelocityScale(float(cfg.geology.vmin), float(cfg.geology.vmax)), pred.prediction, pred.target,
        labels={"variant": pred.attrs.get("variant"), "seed": None if seed < 0 else seed,
                "dataset": dataset or pred.attrs.get("dataset", ""), "split": pred.attrs.get("split", ""),
                "n_samples": len(pred)},
        cost={}, origin={"predictions": str(predictions), "checkpoint": checkpoint or None})
    write_result(Path(out) / RUN.metrics, metrics, RUN.metrics)
    return metrics
