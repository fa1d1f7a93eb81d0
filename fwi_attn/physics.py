"""Physics checks of predicted velocity models, FWI refinement, and prediction for a user's gathers.

A velocity model that scores well on pixels can still predict the wrong data. This module

* re-simulates predicted models with the test set's exact acquisition and measures the data
  misfit against the recorded gathers (``fwi-attn physics``), beside the same numbers for the
  train split's mean model (a baseline) and for the true model (a self-check that must give
  about zero, otherwise the acquisition was not rebuilt faithfully);
* refines a starting model, the network's prediction or a conventional one, by gradient-based
  full-waveform inversion with deepwave (``fwi-attn refine``);
* predicts velocity for a user's own gathers with a trained checkpoint (``fwi-attn predict``).

Shapes follow the project's conventions: velocity ``[n, nz, nx]`` in m/s, gathers
``[n, shot, time, receiver]``; a single model is ``[nz, nx]`` and a single sample's gathers
``[shot, time, receiver]``.

Files written here:

``physics.json`` (format in ``docs/architecture.md``)::

    {"variant", "seed", "dataset", "n_samples", "indices", "seconds_per_sample", "device",
     "baseline", "clipped_fraction",
     "mean": {"rel_l2", "trace_corr", "baseline_rel_l2", "baseline_trace_corr",
              "true_rel_l2", "true_trace_corr"},
     "per_sample": {same keys: one value per sample}}

``refine.json``::

    {"start", "smooth_sigma", "optimizer", "lr", "iterations", "frequencies", "bounds", "device",
     "memory", "seconds", "seconds_per_iteration",
     "runs": [{"sample", "initial": {metrics}, "final": {metrics},
               "stages": [{"corner_hz", "iterations", "before": {metrics}, "after": {metrics},
                           "band_rel_l2": [per iteration], "mae_ms": [per iteration] or null,
                           "seconds"}]}]}

where ``{metrics}`` is ``{"rel_l2", "trace_corr", "band_rel_l2", "mae_ms", "ssim"}`` (model metrics
only when the true model is known), and ``band_rel_l2`` / ``mae_ms`` of a stage list the relative
misfit of the stage's low-passed data and the model error at each iteration (of the model that
iteration evaluates, i.e. before its update; for L-BFGS every function evaluation).
``refined.npy`` holds the refined models ``[n, nz, nx]`` (m/s), one per entry of ``runs``;
``memory`` is the storage plan (see :func:`plan_memory`).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import h5py
import numpy as np
import torch

from fwi_attn.config import add_config_argument, resolve_device, set_threads
from fwi_attn.simulate import forward, simulate, survey_from_shard
from fwi_attn.store import Predictions, atomic_path, read_predictions, read_shard, write_json, write_predictions
from fwi_attn.survey import Survey

#: Largest relative L2 misfit the re-simulated true model may have. Re-simulating with the
#: acquisition a shard records reproduces its gathers to float32 round-off (~1e-6); anything
#: near 1e-3 means that a source position, dt, the wavelet or a boundary setting differs.
TRUE_MISFIT_TOLERANCE = 1e-3

#: Order of the Butterworth prototype of the multiscale low-pass filter. Applied forward and
#: backward (zero phase), so the amplitude response is that of order ``2 * FILTER_ORDER``.
FILTER_ORDER = 4

#: Model-memory plans keep the deepwave estimate (a lower bound) under this fraction of free memory.
MEMORY_HEADROOM = 0.5


class PhysicsError(ValueError):
    """Inputs of a physics check, refinement or prediction are missing or inconsistent."""


class GridError(PhysicsError):
    """A velocity model is on a grid other than the data's."""


class AcquisitionError(PhysicsError):
    """Two data sets, or a data set and its re-simulation, come from different acquisitions."""


# ----------------------------------------------------------------------------- observed data


def acquisition_differences(a: Survey, b: Survey) -> list[str]:
    """What differs between two surveys, in words (empty when they would simulate alike)."""
    out = []
    for name, unit in (("nz", ""), ("nx", ""), ("dx", " m"), ("dt", " s"), ("nt", ""), ("freq", " Hz"),
                       ("peak_time", " s"), ("free_surface", ""), ("accuracy", ""), ("pml_width", " cells"),
                       ("max_vel", " m/s")):
        va, vb = getattr(a, name), getattr(b, name)
        same = math.isclose(va, vb, rel_tol=1e-9, abs_tol=1e-12) if isinstance(va, float) else va == vb
        if not same:
            out.append(f"{name} {va:g}{unit} vs {vb:g}{unit}" if not isinstance(va, bool) else f"{name} {va} vs {vb}")
    for name in ("source_xz", "receiver_xz"):
        pa, pb = getattr(a, name), getattr(b, name)
        what = "sources" if name == "source_xz" else "receivers"
        if pa.shape != pb.shape:
            out.append(f"{len(pa)} vs {len(pb)} {what}")
        elif not np.allclose(pa, pb, rtol=0, atol=1e-6 * max(a.dx, 1.0)):
            k = int(np.argmax(np.abs(pa - pb).max(axis=1)))
            out.append(f"{what} positions differ (first at #{k}: (x, z) = ({pa[k, 0]:g}, {pa[k, 1]:g}) m "
                       f"vs ({pb[k, 0]:g}, {pb[k, 1]:g}) m)")
    return out


def check_acquisition(a: Survey, b: Survey, what_a: str, what_b: str) -> None:
    """Raise :class:`AcquisitionError` naming every difference between two surveys."""
    diffs = acquisition_differences(a, b)
    if diffs:
        raise AcquisitionError(f"{what_a} and {what_b} come from different acquisitions: " + "; ".join(diffs))


def check_grid(velocity: np.ndarray, survey: Survey, what: str) -> None:
    """Raise :class:`GridError` unless ``velocity [..., nz, nx]`` is on the survey's grid."""
    if tuple(velocity.shape[-2:]) != (survey.nz, survey.nx):
        raise GridError(f"{what} is on a {velocity.shape[-2]} x {velocity.shape[-1]} grid but the data were "
                        f"recorded over a {survey.nz} x {survey.nx} grid (nz x nx at dx = {survey.dx:g} m); "
                        f"resample it to the data's grid first (`fwi-attn predict` does so for a network)")


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

    Taken from ``mean_velocity`` in ``<data_dir>/<dataset>/stats.json`` (see :mod:`fwi_attn.dataset`).

    Raises:
        StatsError: no (readable) stats file; it names the command that writes one.
        GridError: the stats describe another grid than the test data's.
    """
    from fwi_attn.dataset import load_stats, mean_velocity
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
    """MAE (m/s) and SSIM of a model ``[nz, nx]`` against the truth (:mod:`fwi_attn.metrics`).

    SSIM is on OpenFWI's scale: velocity min-max scaled to [0, 1] with ``vmin``/``vmax``,
    an 11-pixel window; None for grids under 11 cells a side, where that window does not fit.
    """
    from fwi_attn.metrics import SSIM_WINDOW, mae, ssim

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
    simulated in batches of ``cfg.survey.models_per_call`` through :func:`fwi_attn.simulate.simulate`.

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


def plot_physics(result: PhysicsResult, out: str | os.PathLike, vmin: float, vmax: float, n_rows: int = 2) -> None:
    """One row per sample: true and predicted model, then observed, predicted and residual
    gathers of the middle shot on one clip (so the residual reads against the data)."""
    import matplotlib.pyplot as plt

    from fwi_attn.plots import save_figure, show_gather, show_velocity

    s = result.survey
    rows = min(n_rows, len(result.prediction))
    shot = s.n_shots // 2
    fig, axes = plt.subplots(rows, 5, figsize=(16, 3.3 * rows), squeeze=False, constrained_layout=True)
    per = result.summary["per_sample"]
    for r in range(rows):
        index = result.summary["indices"][r]
        im = show_velocity(axes[r, 0], result.truth[r], s.dx, vmin, vmax, f"true model (index {index})")
        show_velocity(axes[r, 1], result.prediction[r], s.dx, vmin, vmax, "predicted model")
        obs, pred = result.observed[r, shot], result.predicted[r, shot]
        # Clip from the record's later part, so reflections stay visible beside the direct wave.
        clip = float(np.percentile(np.abs(obs[obs.shape[0] // 3:]), 99.5)) or float(np.abs(obs).max()) or 1.0
        rx = s.receiver_xz[:, 0]
        show_gather(axes[r, 2], obs, s.dt, rx, f"observed, shot at x = {s.source_xz[shot, 0]:g} m", clip=clip)
        show_gather(axes[r, 3], pred, s.dt, rx, f"predicted (rel. L2 {per['rel_l2'][r]:.2f}, "
                    f"corr {per['trace_corr'][r]:.2f})", clip=clip)
        show_gather(axes[r, 4], pred - obs, s.dt, rx, "residual (same clip)", clip=clip)
    fig.colorbar(im, ax=axes[:, :2].ravel().tolist(), label="velocity (km/s)", shrink=0.8)
    m = result.summary["mean"]
    fig.suptitle(f"{result.summary.get('variant') or ''} seed {result.summary.get('seed')}: mean rel. L2 misfit "
                 f"{m['rel_l2']:.3f} (mean model {m['baseline_rel_l2']:.3f}, true model {m['true_rel_l2']:.1e}) "
                 f"over {result.summary['n_samples']} samples")
    save_figure(fig, out)


def command_physics(parser: argparse.ArgumentParser):
    """``fwi-attn physics --config C --predictions P --out DIR [--samples N]``."""
    add_config_argument(parser)
    parser.add_argument("--predictions", required=True, help="predictions.h5 written by `fwi-attn evaluate`")
    parser.add_argument("--out", required=True, help="output folder: physics.json and physics.png")
    parser.add_argument("--samples", type=int, default=None, help="re-simulate the first N samples "
                        "(default: physics.samples of the config)")
    parser.add_argument("--device", default=None, help="override study.device (auto, cpu, cuda)")

    def run(args):
        from fwi_attn.config import load_config

        from fwi_attn.store import check_output

        cfg = load_config(args.config)
        check_output(args.out, folder=True)
        set_threads(cfg)
        if args.samples is not None and args.samples < 1:
            raise PhysicsError(f"--samples must be at least 1, got {args.samples}")
        result = physics_check(cfg, args.predictions, samples=args.samples, device=args.device)
        out = Path(args.out)
        write_json(out / "physics.json", result.summary)
        plot_physics(result, out / "physics.png", cfg.geology.vmin, cfg.geology.vmax)
        m = result.summary["mean"]
        print(f"{result.summary['n_samples']} samples, {result.summary['seconds_per_sample']:.3f} s each: "
              f"rel. L2 misfit {m['rel_l2']:.4f} (mean model {m['baseline_rel_l2']:.4f}, true model "
              f"{m['true_rel_l2']:.1e}); trace correlation {m['trace_corr']:.4f} (mean model "
              f"{m['baseline_trace_corr']:.4f})")
        print(f"wrote {out / 'physics.json'} and {out / 'physics.png'}")

    return run


# ----------------------------------------------------------------------------- starting models


def gaussian_smooth(velocity: np.ndarray, sigma_m: float, dx: float) -> np.ndarray:
    """Smooth a model ``[nz, nx]`` (m/s) with a Gaussian of standard deviation ``sigma_m`` metres.

    Edges are extended with their own values, so a smoothed model keeps its edge velocities.
    """
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(np.asarray(velocity, np.float64), sigma_m / dx, mode="nearest").astype(np.float32)


STARTS = ("prediction", "smooth", "background", "ramp")


def starting_model(kind: str, *, dx: float, truth: np.ndarray | None = None, prediction: np.ndarray | None = None,
                   sigma_m: float = 100.0, ramp: Sequence[float] | None = None) -> np.ndarray:
    """A starting model ``[nz, nx]`` (m/s) for FWI.

    Args:
        kind: ``prediction`` (the network's answer), ``smooth`` (the truth smoothed with a
            Gaussian of ``sigma_m`` m), ``background`` (1-D: the lateral mean of the smoothed
            truth), or ``ramp`` (linear v(z): from ``ramp = (top, bottom)`` m/s, or, when
            ``ramp`` is None, the straight line that best fits the truth's lateral mean).
        dx: cell size in m.
    """
    if kind not in STARTS:
        raise PhysicsError(f"unknown starting model {kind!r}; choose one of {', '.join(STARTS)}")
    if kind == "prediction":
        if prediction is None:
            raise PhysicsError("start 'prediction' needs a prediction: give --predictions or --model-start")
        return np.asarray(prediction, np.float32)
    if truth is None:
        raise PhysicsError(f"start {kind!r} is derived from the true model, which is not known here")
    truth = np.asarray(truth, np.float32)
    nz, nx = truth.shape
    if kind == "smooth":
        return gaussian_smooth(truth, sigma_m, dx)
    if kind == "background":
        profile = gaussian_smooth(truth, sigma_m, dx).mean(axis=1)
        return np.repeat(profile[:, None], nx, axis=1).astype(np.float32)
    z = np.arange(nz, dtype=np.float64)
    if ramp is None:
        slope, intercept = np.polyfit(z, truth.mean(axis=1), 1)
        profile = intercept + slope * z
    else:
        profile = np.linspace(float(ramp[0]), float(ramp[1]), nz)
    return np.repeat(profile[:, None], nx, axis=1).astype(np.float32)


# ----------------------------------------------------------------------------- FWI


def lowpass(data: torch.Tensor, corner_hz: float, dt: float, order: int = FILTER_ORDER) -> torch.Tensor:
    """Zero-phase Butterworth low-pass along the time axis of ``[..., time, receiver]`` data.

    Applies ``|H(f)|^2 = 1 / (1 + (f / corner)^(2 order))``, the amplitude response of
    ``scipy.signal.sosfiltfilt`` with a Butterworth of ``order``, in the frequency domain after
    zero-padding the record to twice its length (no wrap-around). Linear and differentiable, so
    the same operator is applied to observed and modelled data: at the true model the filtered
    misfit is exactly zero. (Filtering the source wavelet instead is equivalent only for an
    infinitely long record; measured on a 0.4 s record it leaves 5% misfit at the true model for a
    12 Hz corner and 75% for 4 Hz, from the wavelet's acausal part and the truncated late events.)
    """
    nt = data.shape[-2]
    n_fft = 2 * nt
    f = torch.fft.rfftfreq(n_fft, d=dt, device=data.device, dtype=torch.float64)
    gain = (1.0 / (1.0 + (f / corner_hz) ** (2 * order))).to(data.dtype)
    spec = torch.fft.rfft(data, n=n_fft, dim=-2)
    return torch.fft.irfft(spec * gain[:, None], n=n_fft, dim=-2)[..., :nt, :]


@dataclass
class MemoryPlan:
    """How a model gradient is computed within memory.

    Attributes:
        shots_per_call: shots propagated (and back-propagated) together.
        storage: deepwave storage keywords (``storage_mode``, ``storage_compression``).
        estimate_bytes: deepwave's estimate for one call (a lower bound).
        available_bytes: free memory the plan was made against.
    """

    shots_per_call: int
    storage: dict
    estimate_bytes: int
    available_bytes: int

    def describe(self) -> dict:
        return {"shots_per_call": self.shots_per_call, "storage": dict(self.storage) or {"storage_mode": "device"},
                "estimate_mib": round(self.estimate_bytes / 2 ** 20, 1),
                "available_mib": round(self.available_bytes / 2 ** 20, 1)}


def available_memory(device: torch.device) -> int:
    """Free memory in bytes on ``device`` (host RAM for CPU)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 4 * 2 ** 30


def plan_memory(survey: Survey, device: str | torch.device = "cpu", *, available_bytes: int | None = None,
                headroom: float = MEMORY_HEADROOM) -> MemoryPlan:
    """Choose deepwave storage options and a shot batch so that a gradient fits in memory.

    The gradient needs the forward wavefield history, ``[shot, nt, nz+pad, nx+pad]``; options are
    tried cheapest first (in run time) against ``headroom`` x free memory, using
    :func:`deepwave.estimate_memory`: all shots uncompressed; all shots with 8-bit compressed
    storage (lossy, ~0.1% of the local wavefield); on CUDA, history in host memory
    (``storage_mode='cpu'``), compressed or not; then fewer shots per call (gradients are summed
    over calls); finally history on disk, one shot per call.
    """
    import deepwave

    dev = resolve_device(device)
    avail = available_bytes if available_bytes is not None else available_memory(dev)
    # storage_mode='cpu' moves the history to host memory, which on CUDA is a second budget.
    host = avail if available_bytes is not None or dev.type != "cuda" else available_memory(torch.device("cpu"))
    options = [{}, {"storage_compression": True}]
    if dev.type == "cuda":
        options += [{"storage_mode": "cpu"}, {"storage_mode": "cpu", "storage_compression": True}]
    common = dict(accuracy=survey.accuracy, pml_width=survey.pml_width, models_requiring_grad=["v"], device=dev.type)
    shots = survey.n_shots
    while True:
        for opt in options:
            est = deepwave.estimate_memory("scalar", (survey.nz, survey.nx), survey.nt, shots, **common, **opt)
            total = int(est["total_bytes_lower_bound"])
            if opt.get("storage_mode") == "cpu":
                on_device, on_host = total - int(est["backward_storage_bytes"]), int(est["backward_storage_bytes"])
            else:
                on_device, on_host = total, 0
            if on_device <= headroom * avail and on_host <= headroom * host:
                return MemoryPlan(shots, dict(opt), total, avail)
        if shots == 1:
            break
        shots = (shots + 1) // 2
    opt = {"storage_mode": "disk", "storage_compression": True}
    est = deepwave.estimate_memory("scalar", (survey.nz, survey.nx), survey.nt, 1, **common, **opt)
    warnings.warn(f"even one shot's wavefield history ({est['backward_storage_bytes'] / 2 ** 30:.1f} GiB) does not fit "
                  f"in memory ({avail / 2 ** 30:.1f} GiB free); storing it on disk (slow)", stacklevel=2)
    return MemoryPlan(1, opt, int(est["total_bytes_lower_bound"]), avail)


@dataclass
class RefineResult:
    """Outcome of :func:`refine`: the refined model ``[nz, nx]`` (m/s) and the record of each stage."""

    velocity: np.ndarray
    initial: dict
    final: dict
    stages: list[dict]
    memory: dict
    seconds: float
    iterations: int
    history: list[float] = field(default_factory=list)  # band rel. L2 at every iteration, all stages
    mae_history: list[float] = field(default_factory=list)  # model MAE (m/s) at every iteration, with a truth


def refine(start: np.ndarray, observed: np.ndarray, survey: Survey, *, vmin: float, vmax: float,
           iterations: int = 20, optimizer: str = "adam", lr: float = 20.0, frequencies: Sequence[float] = (),
           truth: np.ndarray | None = None, device: str | torch.device = "cpu", memory: MemoryPlan | None = None,
           log: Callable[[str], None] | None = None) -> RefineResult:
    """Full-waveform inversion of one model from ``start`` with deepwave.

    Minimises ``||F(d(v)) - F(d_obs)||^2 / ||F(d_obs)||^2`` (``F`` the stage's low-pass, or none),
    the squared relative L2 misfit, over velocity ``v`` within ``[vmin, vmax]``.

    Args:
        start: ``[nz, nx]`` starting model, m/s (clipped into the bounds).
        observed: ``[shot, time, receiver]`` recorded data of ``survey``.
        vmin, vmax: velocity bounds in m/s; ``vmax`` may not exceed ``survey.max_vel`` (CFL).
        iterations: iterations per stage (L-BFGS: function evaluations per stage).
        optimizer: ``adam`` (step ``lr`` m/s per cell per iteration, then clamped into the bounds)
            or ``lbfgs`` (on ``v = vmin + (vmax - vmin) sigmoid(u)``, so the bounds hold
            without breaking its curvature pairs; strong-Wolfe line search).
        frequencies: low-pass corner frequencies (Hz) of a multiscale schedule, one stage each, in
            the order given; a corner at or above the wavelet's highest frequency (2.5 x peak) or
            the Nyquist frequency is a full-band stage. Empty: one full-band stage.
        truth: ``[nz, nx]`` true model, for MAE and SSIM before and after each stage.
        memory: storage plan; by default :func:`plan_memory` for the device.
        log: called with one line per stage.

    Returns:
        the refined model and, per stage, metrics before and after (``rel_l2``/``trace_corr``
        on the full band, ``band_rel_l2`` on the stage's band, ``mae_ms``/``ssim`` with a truth).
    """
    dev = resolve_device(device)
    check_grid(start, survey, "the starting model")
    if truth is not None:
        check_grid(truth, survey, "the true model")
    if observed.shape != (survey.n_shots, survey.nt, survey.n_receivers):
        raise AcquisitionError(f"observed data {observed.shape} do not fit the acquisition "
                               f"({survey.n_shots} shots, {survey.nt} samples, {survey.n_receivers} receivers)")
    if not vmin < vmax:
        raise PhysicsError(f"velocity bounds [{vmin:g}, {vmax:g}] m/s are empty")
    if vmax > survey.max_vel * (1 + 1e-9):
        raise PhysicsError(f"upper bound {vmax:g} m/s exceeds max_vel {survey.max_vel:g} m/s that fixes the CFL step")
    if optimizer not in ("adam", "lbfgs"):
        raise PhysicsError(f"unknown optimizer {optimizer!r}; choose adam or lbfgs")
    plan = memory or plan_memory(survey, dev)
    chunks = [(a, min(a + plan.shots_per_call, survey.n_shots)) for a in range(0, survey.n_shots, plan.shots_per_call)]
    subsurveys = [replace(survey, source_xz=survey.source_xz[a:b]) for a, b in chunks]
    obs = torch.as_tensor(observed, dtype=torch.float32, device=dev)
    nyquist = 0.5 / survey.dt
    log = log or (lambda line: None)

    def band(corner):
        """The stage's filter, and whether it is the full band."""
        full = corner is None or corner >= min(survey.fmax, nyquist)
        return ((lambda d: d) if full else (lambda d: lowpass(d, corner, survey.dt))), full

    # The parametrisation keeps v inside the bounds for either optimiser.
    span = vmax - vmin
    v0 = np.clip(np.asarray(start, np.float32), vmin, vmax)
    if optimizer == "adam":
        param = torch.tensor(v0, device=dev, requires_grad=True)
        to_velocity = lambda p: p
    else:
        # Keep the start off the sigmoid's flat tails, where the gradient vanishes.
        frac = np.clip((v0 - vmin) / span, 1e-3, 1 - 1e-3)
        param = torch.tensor(np.log(frac / (1 - frac)), device=dev, requires_grad=True)
        to_velocity = lambda p: vmin + span * torch.sigmoid(p)

    def measure(v: torch.Tensor, filt) -> dict:
        """Metrics of model ``v`` on the full band and on the stage's band (one forward run)."""
        with torch.no_grad():
            d = forward(v[None], survey)[0]
        out = {"rel_l2": float(relative_l2(d, obs)[0]), "trace_corr": float(trace_correlation(d, obs)[0]),
               "band_rel_l2": float(relative_l2(filt(d), filt(obs))[0])}
        if truth is not None:
            out.update(model_metrics(v.detach().cpu().numpy(), truth, vmin, vmax))
        return out

    truth_t = None if truth is None else torch.as_tensor(truth, dtype=torch.float32, device=dev)

    def misfit(filt, obs_f, norm2) -> float:
        """Squared relative misfit; accumulates its gradient into ``param.grad``, shot chunk by chunk.

        Records the band misfit (and the model error) of the model evaluated."""
        total = 0.0
        for (a, b), sub in zip(chunks, subsurveys):
            v = to_velocity(param)
            d = forward(v[None], sub, **plan.storage)[0]
            loss = (filt(d) - obs_f[a:b]).square().sum() / norm2
            loss.backward()
            total += loss.item()
        band_hist.append(math.sqrt(total))
        if truth_t is not None:
            with torch.no_grad():
                mae_hist.append(float((to_velocity(param) - truth_t).abs().mean()))
        return total

    stages_hz = list(frequencies) or [None]
    stages, history, mae_history = [], [], []
    t_start, n_iter = time.perf_counter(), 0
    initial = None
    for k, corner in enumerate(stages_hz):
        filt, full = band(corner)
        obs_f = filt(obs)
        norm2 = obs_f.square().sum().clamp_min(torch.finfo(torch.float32).tiny)
        with torch.no_grad():
            before = measure(to_velocity(param), filt)
        if initial is None:
            initial = before
        band_hist, mae_hist = [], []
        t0 = time.perf_counter()
        if optimizer == "adam":
            opt = torch.optim.Adam([param], lr=lr)
            for _ in range(iterations):
                opt.zero_grad(set_to_none=True)
                misfit(filt, obs_f, norm2)
                opt.step()
                with torch.no_grad():
                    param.clamp_(vmin, vmax)
        else:
            opt = torch.optim.LBFGS([param], lr=1.0, max_iter=iterations, max_eval=iterations, history_size=10,
                                    tolerance_grad=1e-12, tolerance_change=1e-12, line_search_fn="strong_wolfe")

            def closure():
                opt.zero_grad(set_to_none=True)
                return torch.tensor(misfit(filt, obs_f, norm2), dtype=torch.float64)

            opt.step(closure)
        seconds = time.perf_counter() - t0
        n_iter += len(band_hist)
        with torch.no_grad():
            after = measure(to_velocity(param), filt)
        history += band_hist
        mae_history += mae_hist
        stages.append({"corner_hz": None if full else float(corner),
                       "iterations": len(band_hist), "before": before, "after": after,
                       "band_rel_l2": band_hist, "mae_ms": mae_hist if truth is not None else None,
                       "seconds": seconds})
        label = "full band" if full else f"low-pass {corner:g} Hz"
        line = (f"stage {k + 1}/{len(stages_hz)} ({label}, {len(band_hist)} it, "
                f"{seconds / max(len(band_hist), 1):.3f} s/it): "
                f"data misfit {before['rel_l2']:.4f} -> {after['rel_l2']:.4f}")
        if truth is not None:
            line += f", MAE {before['mae_ms']:.1f} -> {after['mae_ms']:.1f} m/s"
            if after["ssim"] is not None:
                line += f", SSIM {before['ssim']:.4f} -> {after['ssim']:.4f}"
        log(line)
    with torch.no_grad():
        velocity = to_velocity(param).detach().cpu().numpy().astype(np.float32)
    return RefineResult(velocity=velocity, initial=initial, final=stages[-1]["after"], stages=stages,
                        memory=plan.describe(), seconds=time.perf_counter() - t_start, iterations=n_iter,
                        history=history, mae_history=mae_history)


def plot_refine(runs: list[dict], out: str | os.PathLike, dx: float, vmin: float, vmax: float) -> None:
    """Before/after figure: per run, the starting, refined and (when known) true model, plus the
    band misfit per iteration."""
    import matplotlib.pyplot as plt

    from fwi_attn.plots import save_figure, show_velocity

    rows = len(runs)
    fig, axes = plt.subplots(rows, 4, figsize=(15, 3.3 * rows), squeeze=False, constrained_layout=True)
    for r, run in enumerate(runs):
        res, start = run["result"], run["start"]
        i0, i1 = res.initial, res.final

        def label(m, name):
            if "mae_ms" in m:
                name += f": MAE {m['mae_ms']:.0f} m/s"
            if m.get("ssim") is not None:
                name += f", SSIM {m['ssim']:.3f}"
            return name

        im = show_velocity(axes[r, 0], start, dx, vmin, vmax, label(i0, f"start ({run['start_kind']})"))
        show_velocity(axes[r, 1], res.velocity, dx, vmin, vmax, label(i1, f"refined ({res.iterations} it)"))
        if run.get("truth") is not None:
            show_velocity(axes[r, 2], run["truth"], dx, vmin, vmax, f"true model ({run['sample']})")
        else:
            axes[r, 2].axis("off")
        ax = axes[r, 3]
        ax.semilogy(np.arange(1, len(res.history) + 1), res.history, lw=1.2)
        edges = np.cumsum([s["iterations"] for s in res.stages])[:-1]
        for e in edges:
            ax.axvline(e + 0.5, color="0.6", lw=0.8, ls="--")
        ax.set_xlabel("iteration")
        ax.set_ylabel("relative misfit (stage band)")
        ax.set_title(f"data misfit {i0['rel_l2']:.3f} -> {i1['rel_l2']:.3f}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    fig.colorbar(im, ax=axes[:, :3].ravel().tolist(), label="velocity (km/s)", shrink=0.8)
    save_figure(fig, out)


# ----------------------------------------------------------------------------- refine command


def _load_start_file(path: Path, sample: int, survey: Survey, data_path: Path) -> np.ndarray:
    """The starting model for ``sample`` of ``data_path`` from a predictions file or a ``.npy``.

    A predictions file must have been predicted from data of the same acquisition, and must
    hold a prediction for that sample; a ``.npy`` is ``[nz, nx]`` or ``[n, nz, nx]`` (row ``sample``).
    Neither is resampled: a model on another grid is an error.
    """
    if not path.is_file():
        raise FileNotFoundError(f"starting model {path} does not exist")
    if path.suffix.lower() in (".h5", ".hdf5"):
        preds = read_predictions(path)
        if len(preds.shards) != 1:
            raise PhysicsError(f"{path} holds predictions for {len(preds.shards)} shards; --model-start needs one "
                               f"made from the --data file alone (`fwi-attn predict`), or use --predictions {path}")
        if preds.shards[0].is_file():
            source = survey_from_shard(read_shard(preds.shards[0], load=False))
            check_acquisition(source, survey, f"the data {path} was predicted from ({preds.shards[0]})",
                              f"the observed data {data_path}")
        else:
            print(f"note: {preds.shards[0]}, the data {path} was predicted from, is not there: "
                  f"cannot check that it has the acquisition of {data_path}")
        rows = np.nonzero(preds.index == sample)[0]
        if not len(rows):
            raise PhysicsError(f"{path} holds no prediction for sample {sample} (it has indices "
                               f"{preds.index[:10].tolist()}{' ...' if len(preds) > 10 else ''})")
        model = preds.prediction[rows[0]]
        what = f"the prediction in {path}"
    elif path.suffix.lower() == ".npy":
        model = np.load(path, allow_pickle=False)
        if model.ndim == 3:
            if not 0 <= sample < len(model):
                raise PhysicsError(f"{path} holds {len(model)} models; no row {sample}")
            model = model[sample]
        what = f"the starting model {path}"
    else:
        raise PhysicsError(f"starting model {path}: use a predictions .h5 (from `fwi-attn predict`) or a .npy")
    model = np.asarray(model, dtype=np.float32)
    check_grid(model, survey, what)
    return model


def command_refine(parser: argparse.ArgumentParser):
    """``fwi-attn refine --config C (--predictions P [--sample I ...] | --data SHARD [--sample I]
    [--model FILE] [--model-start FILE]) [--start KIND] --out DIR``."""
    add_config_argument(parser)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--predictions", help="predictions.h5 of a run: observed data from its test shards, "
                     "start from its prediction")
    src.add_argument("--data", help="an fwi-attn shard with the observed gathers (e.g. from `fwi-attn simulate`)")
    parser.add_argument("--sample", type=int, nargs="+", default=None,
                        help="with --predictions: rows of the file (default: the first physics.refine.samples); "
                             "with --data: sample index within the shard (default 0)")
    parser.add_argument("--model", default=None, help="with --data: the true model (.npy, .h5, SEG-Y; resampled "
                        "to the data's grid; a stack gives sample i model i) for errors and conventional starts; default: the shard's velocity")
    parser.add_argument("--model-start", default=None, help="with --data: starting model, a predictions .h5 from "
                        "`fwi-attn predict` or a .npy on the data's grid (implies --start prediction)")
    parser.add_argument("--start", choices=STARTS, default=None,
                        help="starting model (default: physics.refine.start, or 'prediction' with --model-start)")
    parser.add_argument("--iterations", type=int, default=None, help="iterations per stage (physics.refine.iterations)")
    parser.add_argument("--optimizer", choices=("adam", "lbfgs"), default=None)
    parser.add_argument("--lr", type=float, default=None, help="Adam step in m/s (physics.refine.lr)")
    parser.add_argument("--frequencies", type=float, nargs="*", default=None,
                        help="low-pass corners (Hz) of the multiscale stages (physics.refine.frequencies)")
    parser.add_argument("--sigma", type=float, default=None, help="smoothing sigma in m for 'smooth' and "
                        "'background' starts (physics.refine.smooth_sigma)")
    parser.add_argument("--device", default=None, help="override study.device (auto, cpu, cuda)")
    parser.add_argument("--out", required=True, help="output folder: refine.json, refined.npy, refine.png")

    def run(args):
        from fwi_attn.config import load_config

        from fwi_attn.store import check_output

        cfg = load_config(args.config)
        check_output(args.out, folder=True)
        set_threads(cfg)
        rc = cfg.physics.refine
        pick = lambda given, default: default if given is None else given
        opts = dict(iterations=pick(args.iterations, rc.iterations), optimizer=pick(args.optimizer, rc.optimizer),
                    lr=pick(args.lr, rc.lr), frequencies=list(pick(args.frequencies, rc.frequencies)))
        if opts["iterations"] < 1:
            raise PhysicsError(f"--iterations must be at least 1, got {opts['iterations']}")
        if opts["lr"] <= 0 or any(f <= 0 for f in opts["frequencies"]):
            raise PhysicsError("--lr and --frequencies must be positive")
        sigma = args.sigma if args.sigma is not None else rc.smooth_sigma
        start_kind = args.start or ("prediction" if args.model_start else rc.start)
        ramp = rc.ramp
        dev = resolve_device(args.device or cfg.study.device)

        problems = []  # (label, observed [shot,time,receiver], survey, truth|None, prediction|None)
        if args.predictions:
            if args.model or args.model_start:
                raise PhysicsError("--model and --model-start go with --data; --predictions brings its own models")
            preds = read_predictions(args.predictions)
            rows = args.sample if args.sample is not None else list(range(min(rc.samples, len(preds))))
            bad = [r for r in rows if not 0 <= r < len(preds)]
            if bad:
                raise PhysicsError(f"{preds.path} has rows 0..{len(preds) - 1}; no row {bad[0]}")
            obs = read_samples(preds.shards, preds.index[rows])
            check_grid(preds.prediction, obs.survey, f"the predictions in {preds.path}")
            check_targets(preds, rows, obs)
            for k, r in enumerate(rows):
                problems.append((f"{preds.path} row {r} = {obs.where[k]}", obs.gathers[k], obs.survey,
                                 obs.velocity[k], preds.prediction[r]))
            data_label = str(preds.path)
        else:
            data = Path(args.data)
            shard = read_shard(data, load=False)
            survey = survey_from_shard(shard)
            samples = args.sample if args.sample is not None else [0]
            obs = read_samples([data], samples)
            true_models = None
            if args.model:
                from fwi_attn.geology import load_velocities

                true_models = load_velocities(args.model, survey.nz, survey.nx)
            for k, i in enumerate(samples):
                truth = obs.velocity[k]
                if true_models is not None:
                    # One model serves every sample; a stack gives sample i its own model i.
                    if len(true_models) > 1 and i >= len(true_models):
                        raise PhysicsError(f"--model {args.model} holds {len(true_models)} models, no model for "
                                           f"sample {i} of {data}")
                    truth = true_models[i if len(true_models) > 1 else 0]
                pred = _load_start_file(Path(args.model_start), i, survey, data) if args.model_start else None
                problems.append((obs.where[k], obs.gathers[k], survey, truth, pred))
            data_label = str(data)

        vmin, vmax = float(cfg.geology.vmin), min(float(cfg.geology.vmax), problems[0][2].max_vel)
        # Build every starting model first, so a missing ingredient fails before any work.
        starts = [starting_model(start_kind, dx=survey.dx, truth=truth, prediction=pred, sigma_m=sigma, ramp=ramp)
                  for _, _, survey, truth, pred in problems]
        plan = plan_memory(problems[0][2], dev)
        print(f"refining {len(problems)} sample(s) of {data_label} from the '{start_kind}' start on {dev}: "
              f"{opts['optimizer']}, {opts['iterations']} iterations per stage, stages "
              f"{opts['frequencies'] or 'full band'}; memory plan {plan.describe()}")
        runs = []
        for (label, observed, survey, truth, _), start in zip(problems, starts):
            print(f"{label}:")
            res = refine(start, observed, survey, vmin=vmin, vmax=vmax, truth=truth, device=dev, memory=plan,
                         log=lambda line: print("  " + line), **opts)
            runs.append({"sample": label, "start_kind": start_kind, "start": np.clip(start, vmin, vmax),
                         "truth": truth, "result": res})
        out = Path(args.out)
        total_it = sum(r["result"].iterations for r in runs)
        total_s = sum(r["result"].seconds for r in runs)
        summary = {
            "start": start_kind, "smooth_sigma": sigma if start_kind in ("smooth", "background") else None,
            "optimizer": opts["optimizer"], "lr": opts["lr"] if opts["optimizer"] == "adam" else None,
            "iterations": opts["iterations"], "frequencies": opts["frequencies"], "bounds": [vmin, vmax],
            "device": str(dev), "memory": plan.describe(), "seconds": total_s,
            "seconds_per_iteration": total_s / max(total_it, 1),
            "runs": [{"sample": r["sample"], "initial": r["result"].initial, "final": r["result"].final,
                      "stages": r["result"].stages} for r in runs],
        }
        write_json(out / "refine.json", summary)
        with atomic_path(out / "refined.npy", suffix=".npy") as tmp:
            np.save(tmp, np.stack([r["result"].velocity for r in runs]))
        plot_refine(runs, out / "refine.png", problems[0][2].dx, cfg.geology.vmin, cfg.geology.vmax)
        print(f"wrote {out / 'refine.json'}, {out / 'refined.npy'} and {out / 'refine.png'}")

    return run


# ----------------------------------------------------------------------------- predict


def resample_gathers(gathers: torch.Tensor, nt: int, n_receivers: int) -> torch.Tensor:
    """Resample gathers ``[n, shot, time, receiver]`` to ``nt`` samples and ``n_receivers`` traces.

    Bilinear on corner-aligned axes (the first and last sample and receiver are kept), with
    anti-aliasing when an axis shrinks; a tensor already of that size is returned unchanged.
    """
    if tuple(gathers.shape[-2:]) == (nt, n_receivers):
        return gathers
    shrink = nt < gathers.shape[-2] or n_receivers < gathers.shape[-1]
    return torch.nn.functional.interpolate(gathers, size=(nt, n_receivers), mode="bilinear", align_corners=True,
                                           antialias=shrink)


def resample_velocity(velocity: torch.Tensor, nz: int, nx: int) -> torch.Tensor:
    """Resample velocity ``[n, 1, nz', nx']`` to ``[n, 1, nz, nx]``, bilinear on corner-aligned grids."""
    if tuple(velocity.shape[-2:]) == (nz, nx):
        return velocity
    return torch.nn.functional.interpolate(velocity, size=(nz, nx), mode="bilinear", align_corners=True)


def _describe(norm: dict) -> str:
    return (f"gathers [{norm['gathers_min']:.6g}, {norm['gathers_max']:.6g}], velocity [{norm['vmin']:g}, "
            f"{norm['vmax']:g}], gain {norm['gain_scale']:g} (t/T)^{norm['gain_power']:g}")


def _shard_paths(data: str | os.PathLike | Sequence[str | os.PathLike],
                 skip: str | os.PathLike | None = None) -> list[str | os.PathLike]:
    """Expand ``--data`` entries into shard paths, in order: a file is itself (as given), a folder
    its ``*.h5`` files sorted by name, leaving out hidden files and ``skip`` (the predictions file
    being written, which a second run into the same folder would otherwise read as a shard).

    Raises:
        PhysicsError: nothing given, or a folder without ``*.h5`` files.
    """
    entries = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    if not entries:
        raise PhysicsError("no data shards given; pass --data SHARD.h5 or a folder of shards")
    skip = Path(skip).resolve() if skip is not None else None
    paths: list[str | os.PathLike] = []
    for entry in entries:
        if Path(entry).is_dir():
            found = sorted(p for p in Path(entry).glob("*.h5")
                           if not p.name.startswith(".") and p.is_file() and p.resolve() != skip)
            if not found:
                raise PhysicsError(f"--data {entry} is a folder without *.h5 shards; give shard files or a "
                                   f"folder that holds them")
            paths.extend(found)
        else:
            paths.append(entry)  # read_shard names a missing or invalid file
    return paths


def predict(checkpoint: str | os.PathLike, data: str | os.PathLike | Sequence[str | os.PathLike],
            stats: str | os.PathLike | None, out: str | os.PathLike, *, device: str = "auto",
            batch_size: int = 16, log: Callable[[str], None] = print) -> Path:
    """Predict velocity for every sample of one or more shards with a trained network; write one
    predictions file.

    The gathers are resampled to the network's input size (time axis and receivers, see
    :func:`resample_gathers`), normalised as in training (:class:`fwi_attn.dataset.Normalizer`
    from ``stats``, checked against the checkpoint's own record of it), passed through the
    network, mapped back to m/s within ``[vmin, vmax]`` and resampled to the shards' grid.
    The checkpoint is loaded once; shards are read one at a time.

    Args:
        checkpoint: ``model.pt`` (see :func:`fwi_attn.models.load_model`).
        data: an fwi-attn shard (e.g. from ``fwi-attn simulate``), a folder of ``*.h5`` shards, or
            a sequence of either (folders give their ``*.h5`` files sorted by name); every shard
            must share one acquisition.
        stats: the ``stats.json`` the network was trained with; None: the checkpoint's record.
        out: predictions file (schema ``fwi-attn-predictions/1``): ``[n, nz, nx]`` for the ``n``
            samples of all shards in order, ``index`` counting through them, ``target`` the shards'
            velocity, and the attribute ``shards`` listing the shards read.

    Raises:
        PhysicsError: no shards, the network takes another number of shots, or ``stats`` disagrees
            with the normalisation stored in the checkpoint.
        AcquisitionError: shards recorded with different acquisitions.
        ShardError: a missing or invalid shard.
    """
    from fwi_attn.dataset import Normalizer, load_stats
    from fwi_attn.models import load_model

    paths = _shard_paths(data, skip=out)
    # Check every shard's metadata before any work: one acquisition (hence one grid) for the
    # whole predictions file, as `fwi-attn physics` / `refine --predictions` require of it.
    metas = [read_shard(p, load=False) for p in paths]
    survey = survey_from_shard(metas[0])
    for m in metas[1:]:
        check_acquisition(survey, survey_from_shard(m), str(metas[0].path), str(m.path))

    dev = resolve_device(device)
    model, extra = load_model(checkpoint, map_location="cpu")
    model = model.to(dev).eval()
    size = {k: int(model.config[k]) for k in ("in_shots", "nt", "n_receivers", "nz", "nx")}
    if survey.n_shots != size["in_shots"]:
        raise PhysicsError(f"{checkpoint} takes {size['in_shots']} shots per sample but {metas[0].path} has "
                           f"{survey.n_shots}; simulate the model with the config the network was trained on")
    saved = extra.get("normalization")
    if stats is not None:
        norm = Normalizer.from_stats(load_stats(stats))
        if saved is not None:
            ours, theirs = norm.to_dict(), Normalizer.from_dict(saved).to_dict()
            if not np.allclose(list(ours.values()), list(theirs.values()), rtol=1e-6):
                raise PhysicsError(f"{stats} ({_describe(ours)}) is not the normalisation {checkpoint} was "
                                   f"trained with ({_describe(theirs)}); pass the stats.json of its training data")
    elif saved is not None:
        norm = Normalizer.from_dict(saved)
    else:
        raise PhysicsError(f"{checkpoint} holds no normalisation record: pass --stats")

    # Tell the user when the network was trained on another acquisition: it still runs (after
    # resampling), but then it extrapolates, and the physics check is the way to judge it.
    if isinstance(extra.get("config"), str):
        from fwi_attn.config import load_config

        trained = Survey.from_config(load_config(json.loads(extra["config"])))
        diffs = acquisition_differences(trained, survey)
        if diffs:
            log(f"note: {checkpoint} was trained on another acquisition ({'; '.join(diffs)}); "
                f"gathers are resampled to {size['nt']} samples x {size['n_receivers']} receivers")

    total = sum(m.n for m in metas)
    prediction = np.empty((total, survey.nz, survey.nx), dtype=np.float32)
    target = np.empty_like(prediction)
    offset = 0
    with torch.no_grad():
        for path in paths:
            shard = read_shard(path, load=True)  # one shard in memory at a time
            target[offset:offset + shard.n] = shard.velocity
            for a in range(0, shard.n, batch_size):
                g = torch.as_tensor(shard.gathers[a:a + batch_size], dtype=torch.float32)
                g = resample_gathers(g, size["nt"], size["n_receivers"]).numpy()
                x = torch.from_numpy(norm.gathers(g)).to(dev)
                y = model(x).float()  # [B, 1, nz_net, nx_net] on [-1, 1]
                v = resample_velocity(norm.velocity_inverse(y, clip=True), shard.nz, shard.nx)
                prediction[offset + a:offset + a + len(v)] = v[:, 0].cpu().numpy()
            offset += shard.n
    splits = list(dict.fromkeys(str(m.attrs.get("split", "user")) for m in metas))  # unique, in order
    return write_predictions(out, prediction, target, np.arange(total),
                             shards=[str(p) for p in paths],
                             variant=str(extra.get("variant", getattr(model, "variant", ""))),
                             seed=extra.get("seed"), dataset=str(extra.get("dataset", "")),
                             split="+".join(splits), checkpoint=str(checkpoint))


def command_predict(parser: argparse.ArgumentParser):
    """``fwi-attn predict --checkpoint model.pt --data SHARD|FOLDER ... [--stats stats.json] --out pred.h5``."""
    parser.add_argument("--checkpoint", required=True, help="model.pt of a trained run")
    parser.add_argument("--data", required=True, nargs="+", metavar="SHARD",
                        help="fwi-attn shards with gathers (e.g. from `fwi-attn simulate`) or folders of *.h5 "
                             "shards; all of them go into one predictions file, in the order given")
    parser.add_argument("--stats", default=None, help="data/<dataset>/stats.json the network was trained with "
                        "(default: the normalisation recorded in the checkpoint)")
    parser.add_argument("--out", required=True, help="output predictions .h5 (schema fwi-attn-predictions/1)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument("--batch-size", type=int, default=16, help="samples per network call")

    def run(args):
        if args.batch_size < 1:
            raise PhysicsError(f"--batch-size must be at least 1, got {args.batch_size}")
        out = predict(args.checkpoint, args.data, args.stats, args.out, device=args.device,
                      batch_size=args.batch_size)
        print(f"wrote {out}")

    return run
