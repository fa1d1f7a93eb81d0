"""Physics check of predicted velocity models: ``fwi-attn physics``.

A velocity model that scores well on pixels can still predict the wrong data. This module
re-simulates predicted models with the test set's exact acquisition and measures the data
misfit against the recorded gathers, beside the same numbers for the train split's mean model
(a baseline) and for the true model (a self-check that must give about zero, otherwise the
acquisition was not rebuilt faithfully). FWI refinement lives in :mod:`fwi_attn.physics.fwi`.

Shapes follow the project's conventions: velocity ``[n, nz, nx]`` in m/s, gathers
``[n, shot, time, receiver]``; a single model is ``[nz, nx]`` and a single sample's gathers
``[shot, time, receiver]``.

``physics.json`` (format in ``docs/architecture.md``)::

    {"variant", "seed", "dataset", "n_samples", "indices", "seconds_per_sample", "device",
     "baseline", "clipped_fraction",
     "mean": {"rel_l2", "trace_corr", "baseline_rel_l2", "baseline_trace_corr",
              "true_rel_l2", "true_trace_corr"},
     "per_sample": {same keys: one value per sample}}
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

import h5py
import numpy as np
import torch

from fwi_attn.config import resolve_device
from fwi_attn.data.simulate import simulate, survey_from_shard
from fwi_attn.data.store import Predictions, read_predictions, read_shard
from fwi_attn.data.survey import AcquisitionError, GridError, Survey, check_acquisition, check_grid


#: Largest relative L2 misfit the re-simulated true model may have. Re-simulating with the
#: acquisition a shard records reproduces its gathers to float32 round-off (~1e-6); anything
#: near 1e-3 means that a source position, dt, the wavelet or a boundary setting differs.
TRUE_MISFIT_TOLERANCE = 1e-3

class PhysicsError(ValueError):
    """Inputs of a physics check or a refinement are missing or inconsistent."""


# ----------------------------------------------------------------------------- observed data


@dataclass
class Observed:
    """Recorded samples of one acquisition.

    Attributes:
        survey: the acquisition, rebuilt from the shards.
        gathers: ``[n, shot, time, receiver]``.
        velocity: ``[n, nz, nx]`` m/s, the models the gathers were simulated from.
        where: ``"shard.h5[i]"`` label per sample, for messages.
    """

    survey: Survey
    gathers: np.ndarray
    velocity: np.ndarray
    where: list[str]


def read_samples(shards: Sequence[str | os.PathLike], index: Sequence[int]) -> Observed:
    """Read samples ``index`` of a split made of ``shards`` (counted through the shards in order).

    Every shard must share one acquisition; each shard is opened once and only the requested
    samples' chunks are read.

    Raises:
        ShardError: a missing or invalid shard.
        AcquisitionError: shards recorded with different acquisitions.
        PhysicsError: an index beyond the split.
    """
    if not shards:
        raise PhysicsError("no data shards given")
    metas = [read_shard(p, load=False) for p in shards]
    survey = survey_from_shard(metas[0])
    for m in metas[1:]:
        check_acquisition(survey, survey_from_shard(m), str(metas[0].path), str(m.path))
    offsets = np.cumsum([0] + [m.n for m in metas])
    index = np.asarray(index, dtype=np.int64)
    if len(index) and (index.min() < 0 or index.max() >= offsets[-1]):
        raise PhysicsError(f"sample index {int(index.max() if index.max() >= offsets[-1] else index.min())} "
                           f"is outside the {offsets[-1]} samples of {', '.join(str(m.path) for m in metas)}")
    which = np.searchsorted(offsets, index, side="right") - 1
    gathers = np.empty((len(index), survey.n_shots, survey.nt, survey.n_receivers), dtype=np.float32)
    velocity = np.empty((len(index), survey.nz, survey.nx), dtype=np.float32)
    where = [""] * len(index)
    for s in np.unique(which):
        rows = np.nonzero(which == s)[0]
        with h5py.File(metas[s].path, "r") as f:
            for k in rows:
                local = int(index[k] - offsets[s])
                gathers[k] = f["gathers"][local]  # one chunk per sample
                velocity[k] = f["velocity"][local]
                where[k] = f"{metas[s].path}[{local}]"
    return Observed(survey=survey, gathers=gathers, velocity=velocity, where=where)


def mean_model(cfg, dataset: str, nz: int, nx: int) -> tuple[np.ndarray, str]:
    """The train split's mean velocity model ``[nz, nx]`` (m/s) and where it came from.

    Taken from ``mean_velocity`` in ``<data_dir>/<dataset>/stats.json`` (see :mod:`fwi_attn.data.dataset`).

    Raises:
        StatsError: no (readable) stats file; it names the command that writes one.
        GridError: the stats describe another grid than the test data's.
    """
    from fwi_attn.data.dataset import load_stats, mean_velocity
    from fwi_attn.layout import default_stats_path

    stats_path = default_stats_path(cfg, dataset)
    model = mean_velocity(load_stats(stats_path))
    if model.shape != (nz, nx):
        raise GridError(f"{stats_path} holds a {model.shape[0]} x {model.shape[1]} mean model, the test data "
                        f"are on {nz} x {nx}; rerun `fwi-attn stats` for this dataset")
    return model, f"mean_velocity of {stats_path}"


# ----------------------------------------------------------------------------- misfit measures


def relative_l2(predicted: np.ndarray | torch.Tensor, observed: np.ndarray | torch.Tensor) -> np.ndarray:
    """Relative L2 data misfit ``||d_pred - d_obs|| / ||d_obs||`` per sample.

    Args:
        predicted, observed: ``[n, shot, time, receiver]`` (or ``[shot, time, receiver]`` -> shape ``[1]``).

    Returns:
        float64 ``[n]`` (sums accumulated in float64).
    """
    p, o = _as_batch(predicted), _as_batch(observed)
    n = len(p)
    num = np.sqrt(np.square(p - o).reshape(n, -1).sum(axis=1, dtype=np.float64))
    den = np.sqrt(np.square(o).reshape(n, -1).sum(axis=1, dtype=np.float64))
    return num / np.maximum(den, np.finfo(np.float64).tiny)


def trace_correlation(predicted: np.ndarray | torch.Tensor, observed: np.ndarray | torch.Tensor) -> np.ndarray:
    """Mean over traces of the Pearson correlation of each predicted trace with its observed trace.

    Insensitive to amplitude scale, so it isolates kinematics (arrival times, event shapes).
    Traces without observed energy (dead) carry no information and are left out; a live
    observed trace against a flat predicted one counts as 0.

    Args:
        predicted, observed: ``[n, shot, time, receiver]`` (or one sample ``[shot, time, receiver]``).

    Returns:
        float64 ``[n]`` in [-1, 1] (sums accumulated in float64).
    """
    p, o = _as_batch(predicted), _as_batch(observed)
    p = p - p.mean(axis=2, keepdims=True, dtype=np.float64).astype(p.dtype)
    o = o - o.mean(axis=2, keepdims=True, dtype=np.float64).astype(o.dtype)
    po = (p * o).sum(axis=2, dtype=np.float64)  # [n, shot, receiver]
    pp = np.square(p).sum(axis=2, dtype=np.float64)
    oo = np.square(o).sum(axis=2, dtype=np.float64)
    den = np.sqrt(pp * oo)
    corr = np.divide(po, den, out=np.zeros_like(po), where=den > 0)
    live = oo > 1e-12 * oo.reshape(len(oo), -1).max(axis=1)[:, None, None]
    return np.array([c[m].mean() if m.any() else np.nan for c, m in zip(corr, live)])


def _as_batch(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Gathers as a floating numpy batch ``[n, shot, time, receiver]`` (no copy when possible)."""
    x = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    return x[None] if x.ndim == 3 else x


def model_metrics(velocity: np.ndarray, truth: np.ndarray, vmin: float, vmax: float) -> dict:
    """MAE (m/s) and SSIM of a model ``[nz, nx]`` against the truth (:mod:`fwi_attn.learn.metrics`).

    SSIM is on OpenFWI's scale: velocity min-max scaled to [0, 1] with ``vmin``/``vmax``,
    an 11-pixel window; None for grids under 11 cells a side, where that window does not fit.
    """
    from fwi_attn.learn.metrics import SSIM_WINDOW, mae, ssim

    v, t = np.asarray(velocity, np.float64)[None], np.asarray(truth, np.float64)[None]
    out = {"mae_ms": float(mae(v, t)[0]), "ssim": None}
    if min(t.shape[-2:]) >= SSIM_WINDOW:
        unit = lambda x: np.clip((x - vmin) / (vmax - vmin), 0.0, 1.0)
        out["ssim"] = float(ssim(unit(v), unit(t))[0])
    return out


# ----------------------------------------------------------------------------- physics check


def check_targets(preds: Predictions, rows: Sequence[int], obs: Observed) -> None:
    """Refuse predictions whose ``target`` is not the velocity stored where ``shards``/``index`` point.

    Catches a ``shards`` attribute that lists other data than the predictions were made from
    (moved or regenerated shards), which would otherwise compare a model with foreign gathers.
    """
    for k, r in enumerate(rows):
        if not np.allclose(preds.target[r], obs.velocity[k], rtol=1e-5, atol=0.5):
            raise PhysicsError(f"{preds.path}: the target of row {r} (index {int(preds.index[r])}) is not the "
                               f"velocity stored at {obs.where[k]}; the file's 'shards' attribute does not list "
                               f"the data its predictions were made from")


@dataclass
class PhysicsResult:
    """A physics check's summary (the ``physics.json`` content) and the arrays its figure draws."""

    summary: dict
    survey: Survey
    observed: np.ndarray  # [n, shot, time, receiver]
    predicted: np.ndarray  # [n, shot, time, receiver], simulated from the predictions
    prediction: np.ndarray  # [n, nz, nx] m/s
    truth: np.ndarray  # [n, nz, nx] m/s


def physics_check(cfg, predictions: str | os.PathLike | Predictions, *, samples: int | None = None,
                  device: str | None = None, progress: bool = False) -> PhysicsResult:
    """Re-simulate predicted models with the test data's acquisition and measure the data misfit.

    For each of the first ``samples`` predictions (default ``cfg.physics.samples``): relative L2
    misfit and trace correlation of the prediction's data, of the train split's mean model's data
    (baseline) and of the true model's data, all against the recorded gathers. Every model is
    simulated in batches of ``cfg.survey.models_per_call`` through :func:`fwi_attn.data.simulate.simulate`.

    Raises:
        GridError: predictions on another grid than the data.
        AcquisitionError: the true model does not reproduce its recorded gathers
            (``true_rel_l2 > TRUE_MISFIT_TOLERANCE``): the acquisition differs.
        PhysicsError: predictions that do not belong to the shards they name.
    """
    t0 = time.perf_counter()
    preds = predictions if isinstance(predictions, Predictions) else read_predictions(predictions)
    n = min(samples or cfg.physics.samples, len(preds))
    if n < 1:
        raise PhysicsError(f"{preds.path} holds no predictions")
    obs = read_samples(preds.shards, preds.index[:n])
    survey = obs.survey
    check_grid(preds.prediction, survey, f"the predictions in {preds.path}")
    check_targets(preds, range(n), obs)
    dataset = str(preds.attrs.get("dataset") or cfg.study.dataset)
    baseline, baseline_from = mean_model(cfg, dataset, survey.nz, survey.nx)

    # A network's output is bounded by its normalisation, but a value a hair above max_vel
    # would make the simulation unstable: clip into the range the survey can simulate.
    lo, hi = float(cfg.geology.vmin), survey.max_vel
    prediction = preds.prediction[:n]
    clipped = float(np.mean((prediction < lo) | (prediction > hi)))
    prediction = np.clip(prediction, lo, hi)

    # One batched simulation of every model: predictions, truths, then the (shared) baseline.
    models = np.concatenate([prediction, obs.velocity, baseline[None]])
    dev = resolve_device(device or cfg.study.device)
    data = simulate(models, survey, device=str(dev), models_per_call=cfg.survey.models_per_call,
                    progress=progress, where=str(preds.path))
    d_pred, d_true, d_base = data[:n], data[n:2 * n], np.broadcast_to(data[2 * n], (n, *data.shape[1:]))

    per = {
        "rel_l2": relative_l2(d_pred, obs.gathers), "trace_corr": trace_correlation(d_pred, obs.gathers),
        "baseline_rel_l2": relative_l2(d_base, obs.gathers),
        "baseline_trace_corr": trace_correlation(d_base, obs.gathers),
        "true_rel_l2": relative_l2(d_true, obs.gathers), "true_trace_corr": trace_correlation(d_true, obs.gathers),
    }
    worst = int(np.argmax(per["true_rel_l2"]))
    if per["true_rel_l2"][worst] > TRUE_MISFIT_TOLERANCE:
        raise AcquisitionError(
            f"self-check failed: re-simulating the true model of {obs.where[worst]} gives a relative misfit of "
            f"{per['true_rel_l2'][worst]:.3g} (> {TRUE_MISFIT_TOLERANCE:g}) against its own recorded gathers, so the "
            f"acquisition rebuilt from the shard (dt, nt, source/receiver positions, wavelet, boundary, max_vel) "
            f"is not the one the data were simulated with; no misfit computed on it can be trusted")
    seconds = time.perf_counter() - t0
    summary = {
        "variant": preds.attrs.get("variant"),
        "seed": None if preds.attrs.get("seed") in (None, -1) else int(preds.attrs["seed"]),
        "dataset": dataset,
        "n_samples": n,
        "indices": [int(i) for i in preds.index[:n]],
        "seconds_per_sample": seconds / n,
        "device": str(dev),
        "baseline": baseline_from,
        "clipped_fraction": clipped,
        "mean": {k: float(np.mean(v)) for k, v in per.items()},
        "per_sample": {k: [float(x) for x in v] for k, v in per.items()},
    }
    return PhysicsResult(summary=summary, survey=survey, observed=obs.gathers, predicted=d_pred,
                         prediction=prediction, truth=obs.velocity)
