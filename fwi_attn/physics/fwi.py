"""Full-waveform inversion refinement of a starting model with deepwave: ``fwi-attn refine``.

The starting model is the network's prediction or a conventional one (smoothed truth,
background, ramp); :func:`refine` runs a multiscale, bound-constrained gradient descent
(Adam or L-BFGS) on the data misfit, and :func:`refine_samples` does the whole stage for a
predictions file or a user's shard and writes its files.
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

import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from fwi_attn.config import resolve_device
from fwi_attn.data.simulate import forward, survey_from_shard
from fwi_attn.data.survey import AcquisitionError, Survey, check_acquisition, check_grid
from fwi_attn.io.files import atomic_path
from fwi_attn.io.predictions import read_predictions
from fwi_attn.io.run_json import write_result
from fwi_attn.io.shard import read_shard
from fwi_attn.layout import RUN
from fwi_attn.physics.check import (
    PhysicsError,
    check_targets,
    model_metrics,
    read_samples,
    relative_l2,
    trace_correlation,
)

#: Order of the Butterworth prototype of the multiscale low-pass filter. Applied forward and
#: backward (zero phase), so the amplitude response is that of order ``2 * FILTER_ORDER``.
FILTER_ORDER = 4

#: Model-memory plans keep the deepwave estimate (a lower bound) under this fraction of free memory.
MEMORY_HEADROOM = 0.5


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


def _job_limit() -> int | None:
    """The memory this process may use by its job's limit, when it has one: the cgroup's
    ``memory.max`` (v2) or ``memory.limit_in_bytes`` (v1), less what the cgroup already uses, or
    SLURM's ``SLURM_MEM_PER_NODE`` (MB). A node's free memory overstates what a job may take."""
    limits = []
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            text = Path(limit_file).read_text().strip()
            if text != "max" and int(text) < 2 ** 60:  # v1 writes a huge number for "none"
                used = int(Path(usage_file).read_text().strip()) if Path(usage_file).exists() else 0
                limits.append(max(int(text) - used, 0))
        except (OSError, ValueError):
            pass
    slurm = os.environ.get("SLURM_MEM_PER_NODE")
    if slurm and slurm.isdigit() and int(slurm) > 0:
        limits.append(int(slurm) * 2 ** 20)
    return min(limits) if limits else None


def available_memory(device: torch.device) -> int:
    """Memory in bytes a gradient may use on ``device``: the GPU's free memory; on the CPU the
    host's available RAM, capped by the job's own limit (cgroup or SLURM) where there is one."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    free = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if free is None:
        try:
            free = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
        except (ValueError, OSError, AttributeError):
            free = 4 * 2 ** 30
    limit = _job_limit()
    return free if limit is None else min(free, limit)


#: ``physics.refine.storage``: how the wavefield history of a gradient may be kept (see :func:`plan_memory`).
STORAGE = ("auto", "exact", "compressed")


def plan_memory(survey: Survey, device: str | torch.device = "cpu", *, available_bytes: int | None = None,
                headroom: float = MEMORY_HEADROOM, storage: str = "auto") -> MemoryPlan:
    """Choose deepwave storage options and a shot batch so that a gradient fits in memory.

    The gradient needs the forward wavefield history, ``[shot, nt, nz+pad, nx+pad]``; options are
    tried cheapest first (in run time) against ``headroom`` x free memory, using
    :func:`deepwave.estimate_memory`: all shots uncompressed; all shots with 8-bit compressed
    storage (lossy, ~0.1% of the local wavefield); on CUDA, history in host memory
    (``storage_mode='cpu'``), compressed or not; then fewer shots per call (gradients are summed
    over calls); finally history on disk, one shot per call.

    ``storage`` narrows the options: ``auto`` (all of the above), ``exact`` (never compressed:
    exact gradients, bought with fewer shots per call) or ``compressed`` (always compressed: about
    3.8x less history memory for a 0.2-4% relative error of the model gradient, deepwave's figure).
    """
    if storage not in STORAGE:
        raise PhysicsError(f"physics.refine.storage {storage!r} is not one of {', '.join(STORAGE)}")
    import deepwave

    dev = resolve_device(device)
    avail = available_bytes if available_bytes is not None else available_memory(dev)
    # storage_mode='cpu' moves the history to host memory, which on CUDA is a second budget.
    host = avail if available_bytes is not None or dev.type != "cuda" else available_memory(torch.device("cpu"))
    options = [{}, {"storage_compression": True}]
    if dev.type == "cuda":
        options += [{"storage_mode": "cpu"}, {"storage_mode": "cpu", "storage_compression": True}]
    if storage != "auto":
        options = [o for o in options if o.get("storage_compression", False) == (storage == "compressed")]
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
    opt = {"storage_mode": "disk", "storage_compression": storage != "exact"}
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


# ----------------------------------------------------------------------------- the refine stage


def refine_samples(cfg, out: str | os.PathLike, *, predictions: str | os.PathLike | None = None,
                   data: str | os.PathLike | None = None, sample: Sequence[int] | None = None,
                   model: str | os.PathLike | None = None, model_start: str | os.PathLike | None = None,
                   start: str | None = None, iterations: int | None = None, optimizer: str | None = None,
                   lr: float | None = None, frequencies: Sequence[float] | None = None, sigma: float | None = None,
                   device: str | None = None, storage: str | None = None,
                   log: Callable[[str], None] = print) -> dict:
    """Refine samples by FWI and write ``refine.json`` and ``refined.npy`` to ``out``.

    The observed data and starting models come either from a run's ``predictions`` file (its test
    shards, its predictions; rows ``sample``, default the first ``physics.refine.samples``) or from
    a user's shard ``data`` (samples ``sample``, default 0), with an optional true ``model`` (a
    file: one model for every sample, or a stack with one per sample) and ``model_start``.
    Options left None come from ``cfg.physics.refine``.

    Returns:
        ``(summary, runs)``: the ``refine.json`` dictionary, and per sample a dict with
        ``sample``, ``start_kind``, ``start``, ``dx`` (m), ``truth`` and the :class:`RefineResult` (what
        :func:`fwi_attn.results.physics_plots.plot_refine` draws).

    Raises:
        PhysicsError: inconsistent options or inputs, before any work.
    """
    if (predictions is None) == (data is None):
        raise PhysicsError(f"give exactly one of predictions (a run's {RUN.predictions}) and data (a shard)")
    rc = cfg.physics.refine
    opts = dict(iterations=_pick(iterations, rc.iterations), optimizer=_pick(optimizer, rc.optimizer),
                lr=_pick(lr, rc.lr), frequencies=list(_pick(frequencies, rc.frequencies)))
    if opts["iterations"] < 1:
        raise PhysicsError(f"--iterations must be at least 1, got {opts['iterations']}")
    if opts["lr"] <= 0 or any(f <= 0 for f in opts["frequencies"]):
        raise PhysicsError("--lr and --frequencies must be positive")
    sigma = sigma if sigma is not None else rc.smooth_sigma
    start_kind = start or ("prediction" if model_start else rc.start)
    ramp = rc.ramp
    dev = resolve_device(device or cfg.study.device)

    problems = []  # (label, observed [shot,time,receiver], survey, truth|None, prediction|None)
    if predictions:
        if model or model_start:
            raise PhysicsError("--model and --model-start go with --data; --predictions brings its own models")
        preds = read_predictions(predictions)
        rows = sample if sample is not None else list(range(min(rc.samples, len(preds))))
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
        data = Path(data)
        shard = read_shard(data, load=False)
        survey = survey_from_shard(shard)
        samples = sample if sample is not None else [0]
        obs = read_samples([data], samples)
        true_models = None
        if model:
            from fwi_attn.data.velocity_files import load_velocities

            true_models = load_velocities(model, survey.nz, survey.nx)
        for k, i in enumerate(samples):
            truth = obs.velocity[k]
            if true_models is not None:
                # One model serves every sample; a stack gives sample i its own model i.
                if len(true_models) > 1 and i >= len(true_models):
                    raise PhysicsError(f"--model {model} holds {len(true_models)} models, no model for "
                                       f"sample {i} of {data}")
                truth = true_models[i if len(true_models) > 1 else 0]
            pred = _load_start_file(Path(model_start), i, survey, data) if model_start else None
            problems.append((obs.where[k], obs.gathers[k], survey, truth, pred))
        data_label = str(data)

    vmin, vmax = float(cfg.geology.vmin), min(float(cfg.geology.vmax), problems[0][2].max_vel)
    # Build every starting model first, so a missing ingredient fails before any work.
    starts = [starting_model(start_kind, dx=survey.dx, truth=truth, prediction=pred, sigma_m=sigma, ramp=ramp)
              for _, _, survey, truth, pred in problems]
    plan = plan_memory(problems[0][2], dev, storage=_pick(storage, rc.storage))
    log(f"refining {len(problems)} sample(s) of {data_label} from the '{start_kind}' start on {dev}: "
          f"{opts['optimizer']}, {opts['iterations']} iterations per stage, stages "
          f"{opts['frequencies'] or 'full band'}; memory plan {plan.describe()}")
    runs = []
    for (label, observed, survey, truth, _), start in zip(problems, starts):
        log(f"{label}:")
        res = refine(start, observed, survey, vmin=vmin, vmax=vmax, truth=truth, device=dev, memory=plan,
                     log=lambda line: log("  " + line), **opts)
        runs.append({"sample": label, "start_kind": start_kind, "start": np.clip(start, vmin, vmax),
                     "dx": survey.dx,
                     "truth": truth, "result": res})
    out = Path(out)
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
    write_result(out / RUN.refine, summary, RUN.refine)
    with atomic_path(out / RUN.refined, suffix=".npy") as tmp:
        np.save(tmp, np.stack([r["result"].velocity for r in runs]))
    log(f"wrote {out / RUN.refine} and {out / RUN.refined}")
    return summary, runs


def _pick(given, default):
    return default if given is None else given
