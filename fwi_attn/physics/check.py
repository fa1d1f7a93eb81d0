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
     "reflection": {"gain_power", "delay_s", "taper_s"},
     "mean": {"rel_l2", "trace_corr", "baseline_rel_l2", "baseline_trace_corr",
              "true_rel_l2", "true_trace_corr",
              "rel_l2_reflection", "trace_corr_reflection", "baseline_rel_l2_reflection",
              "baseline_trace_corr_reflection", "true_rel_l2_reflection", "true_trace_corr_reflection"},
     "per_sample": {same keys: one value per sample, in the order of "indices"}}

The ``*_reflection`` misfits are the same measures on the data the network had to explain:
direct wave and first arrivals muted and late arrivals gained (:func:`reflection_window`,
whose settings ``reflection`` records; ``delay_s`` and ``taper_s`` in s, ``gain_power``
dimensionless); null for a sample whose window keeps no observed energy.

``gathers.h5`` beside it (:mod:`fwi_attn.io.gathers`):
the observed and re-simulated gathers of the showcase sample
(:func:`fwi_attn.learn.evaluate.showcase_index`, the one the comparison figures show), so the
figures draw the data fit without simulating anything.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from fwi_attn.config import resolve_device
from fwi_attn.data.survey import AcquisitionError, GridError, Survey, check_acquisition, check_grid
from fwi_attn.io.gathers import Showcase, write_gathers
from fwi_attn.io.predictions import Predictions, read_predictions
from fwi_attn.io.shard import read_shard
from fwi_attn.layout import RUN

if TYPE_CHECKING:
    import torch

# The simulator (fwi_attn.data.simulate) is imported where it runs: the figures read gathers.h5
# through this module and must not load it.


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
    from fwi_attn.data.simulate import survey_from_shard

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
    from fwi_attn.io.stats import load_stats, mean_velocity
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


#: Exponent ``p`` of the reflection window's time gain ``(t / T)^p`` (:func:`reflection_window`).
REFLECTION_GAIN_POWER = 2.0


def direct_arrival_times(velocity: np.ndarray, survey: Survey) -> np.ndarray:
    """Direct-wave traveltime (s) from each source to each receiver along the surface.

    ``t_d(s, r) = |integral of 1 / v(x, z_r) dx from x_s to x_r| + |z_s - z_r| / v(x_s, z_r)``: the
    slowness of the receivers' row (depth ``z_r``) integrated by the trapezoid rule between the
    source's and the receiver's x (positions snapped to the grid), plus the vertical leg between
    source and receiver depth. For a laterally constant near surface this is ``offset / v``.
    Diving waves, head waves and wide-angle reflections that beat the direct wave at long
    offsets arrive before ``t_d``, so a mute that starts after it removes every first arrival.

    Args:
        velocity: ``[n, nz, nx]`` or ``[nz, nx]`` in m/s.
        survey: the acquisition (positions in m, ``dx`` in m).

    Returns:
        float64 ``[n, shot, receiver]`` (``[shot, receiver]`` for one model) in s.
    """
    v = np.asarray(velocity, dtype=np.float64)
    one = v.ndim == 2
    v = v[None] if one else v
    dx = float(survey.dx)
    src = np.rint(np.asarray(survey.source_xz, np.float64) / dx).astype(np.int64)  # [shot, (x, z)] cells
    rec = np.rint(np.asarray(survey.receiver_xz, np.float64) / dx).astype(np.int64)
    row = int(np.clip(np.median(rec[:, 1]), 0, v.shape[1] - 1))
    slow = 1.0 / v[:, row, :]  # [n, nx] s/m
    # cum[i]: traveltime from x = 0 to x = i * dx along the row.
    cum = np.concatenate([np.zeros((len(v), 1)), np.cumsum(0.5 * dx * (slow[:, 1:] + slow[:, :-1]), axis=1)], axis=1)
    sx = np.clip(src[:, 0], 0, v.shape[2] - 1)
    rx = np.clip(rec[:, 0], 0, v.shape[2] - 1)
    t = np.abs(cum[:, rx][:, None, :] - cum[:, sx][:, :, None])  # [n, shot, receiver]
    t += (np.abs(src[:, 1] - row) * dx)[None, :, None] * slow[:, sx][:, :, None]
    return t[0] if one else t


def reflection_window(velocity: np.ndarray, survey: Survey, *, gain_power: float = REFLECTION_GAIN_POWER,
                      delay: float | None = None, taper: float | None = None) -> np.ndarray:
    """Weights that keep the reflections of a gather: a mute of the direct wave and first
    arrivals times a time gain that balances late arrivals.

    With ``t = k dt`` (s, ``k = 0 .. nt - 1``, time since the source started), ``T = (nt - 1) dt``
    and ``t_d`` the direct-wave traveltime of :func:`direct_arrival_times` (s)::

        w(t) = m(t) * (t / T)^p
        m(t) = 0                                          for t < t_m,  t_m = t_d + delay
             = (1 - cos(pi (t - t_m) / taper)) / 2        for t_m <= t < t_m + taper
             = 1                                          after

    ``delay`` defaults to ``peak_time + 1 / freq`` (s): the Ricker wavelet peaks ``peak_time``
    after ignition and ``1 / freq`` after its peak it has decayed to 1e-3 of it, so the direct
    wave (and every earlier arrival) lies in the zeroed part. ``taper`` defaults to ``1 / freq``
    (one dominant period, s). The gain is dimensionless, 1 at the last sample; ``p = 2`` is the
    classic ``t^2`` correction (one power for geometric spreading, one for the loss of
    transmitted energy), which brings the deep reflections of these models to the order of the
    shallow ones. The weights depend on the model only through its near-surface row, and
    the same weights must be applied to the data being compared: the physics check takes them
    from the true model, so that every prediction is scored on the same window.

    Args:
        velocity: ``[n, nz, nx]`` (or ``[nz, nx]``) in m/s: the models whose near surface sets ``t_d``.
        survey: the acquisition (``dt``, ``nt``, ``freq``, ``peak_time``, positions).
        gain_power: ``p`` (dimensionless, >= 0).
        delay, taper: in s (>= 0).

    Returns:
        float32 ``[n, shot, time, receiver]`` (``[shot, time, receiver]`` for one model) in [0, 1].
    """
    delay = float(survey.peak_time + 1.0 / survey.freq) if delay is None else float(delay)
    taper = float(1.0 / survey.freq) if taper is None else float(taper)
    if gain_power < 0 or delay < 0 or taper < 0:
        raise PhysicsError(f"reflection window: gain_power, delay and taper must be >= 0, got {gain_power}, "
                           f"{delay} s, {taper} s")
    t_d = direct_arrival_times(velocity, survey)
    one = t_d.ndim == 2
    t_d = t_d[None] if one else t_d
    t = np.arange(survey.nt, dtype=np.float64) * survey.dt  # [time]
    since = t[None, None, :, None] - (t_d[:, :, None, :] + delay)  # [n, shot, time, receiver] s
    if taper > 0:
        mute = 0.5 * (1.0 - np.cos(np.pi * np.clip(since / taper, 0.0, 1.0)))
    else:
        mute = (since >= 0).astype(np.float64)
    gain = (t / max(t[-1], survey.dt)) ** gain_power
    w = (mute * gain[None, None, :, None]).astype(np.float32)
    return w[0] if one else w


def reflection_misfits(predicted: np.ndarray, observed: np.ndarray, window: np.ndarray) -> dict[str, np.ndarray]:
    """:func:`relative_l2` and :func:`trace_correlation` of the windowed data ``window * d``.

    Args:
        predicted, observed: ``[n, shot, time, receiver]``.
        window: :func:`reflection_window` of the true models, ``[n, shot, time, receiver]``.

    Returns:
        ``{"rel_l2": float64 [n], "trace_corr": float64 [n]}``; NaN for a sample whose window
        leaves no observed energy (every trace muted).
    """
    p, o = _as_batch(predicted) * window, _as_batch(observed) * window
    rel = relative_l2(p, o)
    empty = np.square(o).reshape(len(o), -1).sum(axis=1, dtype=np.float64) == 0
    rel[empty] = np.nan
    corr = trace_correlation(p, o)
    corr[empty] = np.nan
    return {"rel_l2": rel, "trace_corr": corr}


def _json_float(x) -> float | None:
    """A float for JSON, None for NaN (a reflection misfit of a sample whose window is empty)."""
    x = float(x)
    return x if np.isfinite(x) else None


def _as_batch(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """Gathers as a floating numpy batch ``[n, shot, time, receiver]`` (no copy when possible)."""
    x = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)  # a torch.Tensor
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    return x[None] if x.ndim == 3 else x


def model_metrics(velocity: np.ndarray, truth: np.ndarray, vmin: float, vmax: float) -> dict:
    """MAE (m/s) and SSIM of a model ``[nz, nx]`` against the truth (:mod:`fwi_attn.learn.metrics`).

    SSIM is OpenFWI's (:func:`fwi_attn.learn.metrics.ssim`): velocity min-max scaled to [0, 1] with
    ``vmin``/``vmax``, an 11-cell Gaussian window with zero padding.
    """
    from fwi_attn.data.normalize import Normalizer
    from fwi_attn.learn.metrics import mae, ssim

    v, t = np.asarray(velocity, np.float64)[None], np.asarray(truth, np.float64)[None]
    scale = Normalizer.for_velocity(vmin, vmax)

    def unit(x):
        return scale.unit_interval(scale.velocity(x))

    return {"mae_ms": float(mae(v, t)[0]), "ssim": float(ssim(unit(v), unit(t))[0])}


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
    """A physics check's summary (the ``physics.json`` content) and the arrays its figures draw."""

    summary: dict
    survey: Survey
    observed: np.ndarray  # [n, shot, time, receiver]
    predicted: np.ndarray  # [n, shot, time, receiver], simulated from the predictions
    prediction: np.ndarray  # [n, nz, nx] m/s
    truth: np.ndarray  # [n, nz, nx] m/s
    showcase: Showcase | None = None  # the sample the comparison figures show (gathers.h5)


def physics_check(cfg, predictions: str | os.PathLike | Predictions, *, samples: int | None = None,
                  device: str | None = None, progress: bool = False,
                  simulated: dict | None = None) -> PhysicsResult:
    """Re-simulate predicted models with the test data's acquisition and measure the data misfit.

    For each of the first ``samples`` predictions (default ``cfg.physics.samples``): relative L2
    misfit and trace correlation of the prediction's data, of the train split's mean model's data
    (baseline) and of the true model's data, all against the recorded gathers, once on the raw
    traces and once on their reflections (``*_reflection``: :func:`reflection_misfits` in the
    :func:`reflection_window` of the sample's true model). The showcase
    sample (:func:`fwi_attn.learn.evaluate.showcase_index` of all the file's targets, with
    ``evaluate.salt_threshold``) is re-simulated too, when it is not among them, for
    ``gathers.h5``. Every model is simulated in batches of ``cfg.survey.models_per_call``
    through :func:`fwi_attn.data.simulate.simulate`.

    ``simulated``: a dict shared by the checks of one process (``fwi-attn physics`` with several
    predictions files): the data
    of the true models and of the mean model, keyed by sample and by baseline, are simulated by
    the first check that needs them and reused by the others (a study's runs are scored on the
    same test samples).

    Raises:
        GridError: predictions on another grid than the data.
        AcquisitionError: the true model does not reproduce its recorded gathers
            (``true_rel_l2 > TRUE_MISFIT_TOLERANCE``): the acquisition differs.
        PhysicsError: predictions that do not belong to the shards they name.
    """
    from fwi_attn.data.simulate import simulate
    from fwi_attn.learn.evaluate import showcase_index

    t0 = time.perf_counter()
    preds = predictions if isinstance(predictions, Predictions) else read_predictions(predictions)
    n = min(samples or cfg.physics.samples, len(preds))
    if n < 1:
        raise PhysicsError(f"{preds.path} holds no predictions")
    # The first n rows are scored; the showcase row joins them when it is not one of them.
    show = showcase_index(preds.target, cfg.evaluate.salt_threshold)
    rows = list(range(n)) + ([show] if show >= n else [])
    obs = read_samples(preds.shards, preds.index[rows])
    survey = obs.survey
    check_grid(preds.prediction, survey, f"the predictions in {preds.path}")
    check_targets(preds, rows, obs)
    dataset = str(preds.attrs.get("dataset") or cfg.study.dataset)
    baseline, baseline_from = mean_model(cfg, dataset, survey.nz, survey.nx)

    # A network's output is bounded by its normalisation, but a value a hair above max_vel
    # would make the simulation unstable: clip into the range the survey can simulate.
    lo, hi = float(cfg.geology.vmin), survey.max_vel
    prediction = preds.prediction[rows]
    clipped = float(np.mean((prediction[:n] < lo) | (prediction[:n] > hi)))
    prediction = np.clip(prediction, lo, hi)

    # One batched simulation of the models not simulated yet: predictions (and the showcase's),
    # truths, then the (shared) baseline.
    simulated = {} if simulated is None else simulated
    m = len(rows)
    keys = [("truth", where) for where in obs.where[:n]] + [("baseline", baseline_from, *map(str, preds.shards))]
    todo = [k for k in dict.fromkeys(keys) if k not in simulated]
    references = {("truth", w): v for w, v in zip(obs.where[:n], obs.velocity[:n])}
    models = np.concatenate([prediction] + [(references[k] if k[0] == "truth" else baseline)[None] for k in todo])
    dev = resolve_device(device or cfg.study.device)
    data = simulate(models, survey, device=str(dev), models_per_call=cfg.survey.models_per_call,
                    progress=progress, where=str(preds.path))
    simulated.update(zip(todo, data[m:]))
    d_pred = data[:n]
    d_true = np.stack([simulated[k] for k in keys[:n]])
    d_base_one = simulated[keys[-1]]
    d_base = np.broadcast_to(d_base_one, (n, *d_base_one.shape))
    observed = obs.gathers[:n]

    per = {
        "rel_l2": relative_l2(d_pred, observed), "trace_corr": trace_correlation(d_pred, observed),
        "baseline_rel_l2": relative_l2(d_base, observed),
        "baseline_trace_corr": trace_correlation(d_base, observed),
        "true_rel_l2": relative_l2(d_true, observed), "true_trace_corr": trace_correlation(d_true, observed),
    }
    # The same misfits on the reflections: one window per sample, from its true model (sample by
    # sample: the window of a large check would otherwise hold every gather in float64 twice).
    for prefix in ("", "baseline_", "true_"):
        per.update({f"{prefix}{key}_reflection": np.empty(n) for key in ("rel_l2", "trace_corr")})
    for i in range(n):
        window = reflection_window(obs.velocity[i:i + 1], survey)
        for prefix, d in (("", d_pred), ("baseline_", d_base), ("true_", d_true)):
            for key, value in reflection_misfits(d[i:i + 1], observed[i:i + 1], window).items():
                per[f"{prefix}{key}_reflection"][i] = value[0]
    worst = int(np.argmax(per["true_rel_l2"]))
    if per["true_rel_l2"][worst] > TRUE_MISFIT_TOLERANCE:
        raise AcquisitionError(
            f"self-check failed: re-simulating the true model of {obs.where[worst]} gives a relative misfit of "
            f"{per['true_rel_l2'][worst]:.3g} (> {TRUE_MISFIT_TOLERANCE:g}) against its own recorded gathers, so the "
            f"acquisition rebuilt from the shard (dt, nt, source/receiver positions, wavelet, boundary, max_vel) "
            f"is not the one the data were simulated with; no misfit computed on it can be trusted")
    seconds = time.perf_counter() - t0
    seed = None if preds.attrs.get("seed") in (None, -1) else int(preds.attrs["seed"])
    summary = {
        "variant": preds.attrs.get("variant"),
        "seed": seed,
        "dataset": dataset,
        "n_samples": n,
        "indices": [int(i) for i in preds.index[:n]],
        "seconds_per_sample": seconds / n,
        "device": str(dev),
        "baseline": baseline_from,
        "clipped_fraction": clipped,
        "reflection": {"gain_power": REFLECTION_GAIN_POWER, "delay_s": float(survey.peak_time + 1.0 / survey.freq),
                       "taper_s": float(1.0 / survey.freq)},
        "mean": {k: _json_float(np.nanmean(v) if np.isfinite(v).any() else np.nan) if k.endswith("_reflection")
                 else float(np.mean(v)) for k, v in per.items()},
        "per_sample": {k: [_json_float(x) if k.endswith("_reflection") else float(x) for x in v]
                       for k, v in per.items()},
    }
    j = rows.index(show)
    showcase = Showcase(index=int(preds.index[show]), observed=obs.gathers[j], predicted=data[j], baseline=d_base_one,
                        truth=obs.velocity[j], prediction=prediction[j], dt=survey.dt, dx=survey.dx,
                        source_xz=np.asarray(survey.source_xz), receiver_xz=np.asarray(survey.receiver_xz),
                        attrs={"variant": summary["variant"], "seed": seed, "dataset": dataset,
                               "predictions": str(preds.path), "baseline": baseline_from})
    return PhysicsResult(summary=summary, survey=survey, observed=observed, predicted=d_pred,
                         prediction=prediction[:n], truth=obs.velocity[:n], showcase=showcase)


def run_physics(cfg, predictions: str | os.PathLike, out: str | os.PathLike | None = None, *,
                samples: int | None = None, device: str | None = None,
                simulated: dict | None = None) -> PhysicsResult:
    """:func:`physics_check` of one predictions file, written as ``fwi-attn physics`` writes it:
    ``physics.json`` and ``gathers.h5`` in ``out`` (default: the predictions file's folder),
    atomically. The figure (``physics.png``) is the results stage's (``--figure``).

    Args:
        cfg: a validated :class:`fwi_attn.config.Config`.
        predictions: a ``predictions.h5`` of ``fwi-attn evaluate`` or ``predict``.
        out: output folder.
        samples, device, simulated: as :func:`physics_check` (``simulated`` shares the true and
            mean models' simulations between runs of one call).

    Returns:
        The :class:`PhysicsResult` written.
    """
    from fwi_attn.io.files import check_output
    from fwi_attn.io.run_json import write_result

    out = Path(out) if out is not None else Path(predictions).parent
    check_output(out, folder=True)
    result = physics_check(cfg, predictions, samples=samples, device=device, simulated=simulated)
    write_result(out / RUN.physics, result.summary, RUN.physics)
    write_gathers(out / RUN.gathers, result.showcase)
    return result
