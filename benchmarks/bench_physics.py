"""Speed of the physics check and of FWI iterations, and the payoff of starting FWI from a network.

Three tables, all on the study config's survey (default: ``workflows/config/default.yaml``,
64 x 64 cells, 5 shots, 64 receivers, 320 samples, accuracy 8):

1. **Physics check**: seconds per sample of :func:`fwi_attn.physics.check.physics_check` (reading the
   shards, re-simulating prediction, true model and mean model, misfits) against the bare cost
   of the same simulations, ``deepwave.scalar`` called directly on the same models with the
   same batching, measured in the same run, alternating (ours, bare) so load drift hits both.
   Ratio bare / ours (target >= 0.95).
2. **FWI iteration**: seconds per iteration of :func:`fwi_attn.physics.check.refine` (Adam; L-BFGS per
   function evaluation; Adam with compressed storage) against a bare deepwave forward + backward of
   the same model and shots.
4. **Salt-base sensitivity** (before 2 and 3): on the test models with salt, the raw-trace and
   the reflection misfits (:func:`fwi_attn.physics.check.reflection_misfits`) of the true model
   with its salt base raised by ``--base-cells`` cells, on each misfit's own scale (0 = perfect,
   1 = no data / uncorrelated traces) and divided by the same misfit of two reference
   perturbations: the model with its salt replaced by the row's sediment and the mean model.
   ``--skip-fwi`` stops after it.
3. **Payoff**: Adam FWI from a network-like prediction and from the conventional start (the
   truth smoothed with ``physics.refine.smooth_sigma``): model error per iteration, and the
   iterations the conventional start needs to reach the error the prediction starts with and
   the error it ends with.

The predictions come from ``--predictions``, else from ``results/<study>/*/seed0/predictions.h5``
of ``make all`` (the run with the lowest test MAE) when one exists, else from a PROXY: the truth smoothed with a
30 m Gaussian, on a small test set generated here. The proxy is not a network: it says what a
network of that error would buy, not what this study's networks buy.

    python benchmarks/bench_physics.py                       # CPU, default config
    python benchmarks/bench_physics.py --proxy               # network-like proxy instead of a trained run
    python benchmarks/bench_physics.py --device cuda         # where a GPU is present

Prints markdown tables (copied into docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import deepwave
import numpy as np
import torch
from _common import cpu_name  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

from fwi_attn.config import load_config, resolve_device
from fwi_attn.data.dataset import compute_stats
from fwi_attn.data.simulate import cells, generate_shard
from fwi_attn.data.sources import split_sources
from fwi_attn.data.survey import Survey
from fwi_attn.io.files import write_json
from fwi_attn.io.predictions import read_predictions, write_predictions
from fwi_attn.layout import default_stats_path, shard_path
from fwi_attn.physics.check import mean_model, physics_check, read_samples
from fwi_attn.physics.fwi import MemoryPlan, gaussian_smooth, plan_memory, refine, starting_model

PROXY_SIGMA_M = 30.0




def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def find_run_predictions(cfg) -> Path | None:
    """The seed-0 predictions of ``make all`` with the lowest test MAE, if any exist."""
    best, best_mae = None, float("inf")
    for p in sorted(glob.glob(str(Path(cfg.study.results_dir) / cfg.study.name / "*" / "seed0" / "predictions.h5"))):
        p = Path(p)
        try:
            preds = read_predictions(p)
        except (ValueError, OSError):
            continue
        if not all(s.is_file() for s in preds.shards):
            continue
        metrics = p.with_name("metrics.json")
        mae = json.loads(metrics.read_text())["mean"]["mae_ms"] if metrics.is_file() else float("inf")
        if best is None or mae < best_mae:
            best, best_mae = p, mae
    return best


def proxy_predictions(cfg, root: Path, n: int) -> tuple[object, Path]:
    """A small generated test set (and train set, for the mean model) with proxy predictions."""
    raw = cfg.to_dict()
    raw["study"]["data_dir"] = str(root / "data")
    raw["datasets"] = {"salt": {**raw["datasets"][cfg.study.dataset], "samples": {"train": n, "val": 1, "test": n},
                                "shard_size": n}}
    raw["study"]["dataset"] = "salt"
    cfg = load_config(raw)
    paths = {}
    for split in ("train", "test"):
        paths[split] = shard_path(cfg.study.data_dir, "salt", split, 0)
        generate_shard(cfg, "salt", split, 0, paths[split])
    # The mean model (the physics check's baseline) is read from the training split's statistics.
    write_json(default_stats_path(cfg), compute_stats(split_sources(cfg, "train"), cfg.geology.vmin, cfg.geology.vmax,
                                                      **cfg.normalize, dataset="salt"))
    obs = read_samples([paths["test"]], range(n))
    pred = np.stack([gaussian_smooth(v, PROXY_SIGMA_M, cfg.survey.dx) for v in obs.velocity])
    out = root / "predictions.h5"
    write_predictions(out, pred, obs.velocity, np.arange(n), shards=[paths["test"]], variant="proxy", seed=0,
                      dataset="salt", split="test", checkpoint=f"none (truth smoothed by {PROXY_SIGMA_M:g} m)")
    return cfg, out


def bare_forward(models: np.ndarray, survey: Survey, device: torch.device, per_call: int) -> float:
    """Seconds for deepwave.scalar itself on ``models`` [n, nz, nx], ``per_call`` models per call."""
    s, r = survey.n_shots, survey.n_receivers
    src_cells, rec_cells = cells(survey.source_xz, survey.dx), cells(survey.receiver_xz, survey.dx)
    wavelet = survey.wavelet().to(device)
    p = survey.pml_width
    boundary = (dict(pml_width=[0, p, p, p], boundary=["free", "pml", "pml", "pml"]) if survey.free_surface
                else dict(pml_width=p))
    elapsed = 0.0
    with torch.no_grad():
        for a in range(0, len(models), per_call):
            chunk = torch.as_tensor(models[a:a + per_call], device=device)
            m = len(chunk)
            v = chunk.unsqueeze(1).expand(m, s, *chunk.shape[1:]).reshape(m * s, *chunk.shape[1:])
            amps = wavelet.reshape(1, 1, -1).expand(m * s, 1, -1).contiguous()
            src = src_cells.to(device).reshape(1, s, 1, 2).expand(m, s, 1, 2).reshape(m * s, 1, 2).contiguous()
            rec = rec_cells.to(device).reshape(1, r, 2).expand(m * s, r, 2).contiguous()
            sync(device)
            t0 = time.perf_counter()
            deepwave.scalar(v, survey.dx, survey.dt, source_amplitudes=amps, source_locations=src,
                            receiver_locations=rec, accuracy=survey.accuracy, pml_freq=survey.freq,
                            max_vel=survey.max_vel, **boundary)
            sync(device)
            elapsed += time.perf_counter() - t0
    return elapsed


def bare_gradient(model: np.ndarray, observed: np.ndarray, survey: Survey, device: torch.device) -> float:
    """Seconds for one deepwave.scalar forward + backward of one model, all shots, in one call."""
    s, r = survey.n_shots, survey.n_receivers
    v = torch.tensor(model, device=device, requires_grad=True)
    amps = survey.wavelet().to(device).reshape(1, 1, -1).expand(s, 1, -1).contiguous()
    src = cells(survey.source_xz, survey.dx).to(device).reshape(s, 1, 2)
    rec = cells(survey.receiver_xz, survey.dx).to(device).reshape(1, r, 2).expand(s, r, 2).contiguous()
    obs = torch.as_tensor(observed, device=device).transpose(1, 2)  # [shot, receiver, time]
    sync(device)
    t0 = time.perf_counter()
    out = deepwave.scalar(v, survey.dx, survey.dt, source_amplitudes=amps, source_locations=src,
                          receiver_locations=rec, accuracy=survey.accuracy, pml_freq=survey.freq,
                          max_vel=survey.max_vel, pml_width=survey.pml_width)
    (out.receiver_amplitudes - obs).square().sum().backward()
    sync(device)
    return time.perf_counter() - t0


def raise_salt_base(model: np.ndarray, cells: int, threshold: float) -> np.ndarray:
    """``model`` ``[nz, nx]`` (m/s) with the lowest ``cells`` salt cells of every column (the salt
    base raised by ``cells`` cells) given the velocity just below the base."""
    out = model.copy()
    salt = model > threshold
    for ix in range(model.shape[1]):
        z = np.nonzero(salt[:, ix])[0]
        if len(z):
            below = model[min(z.max() + 1, model.shape[0] - 1), ix]
            out[max(z.min(), z.max() - cells + 1):z.max() + 1, ix] = below
    return out


def remove_salt(model: np.ndarray, threshold: float) -> np.ndarray:
    """``model`` with every salt cell given the mean sediment velocity of its row (m/s)."""
    out = model.copy()
    for row in out:
        salt = row > threshold
        if salt.any():
            row[salt] = row[~salt].mean() if (~salt).any() else threshold
    return out


def salt_base_sensitivity(cfg, obs, baseline: np.ndarray, device, cells: int, n_max: int = 4) -> None:
    """Print table 4 (see the module docstring) for up to ``n_max`` test models with >= 2% salt."""
    from fwi_attn.data.simulate import simulate
    from fwi_attn.physics.check import reflection_misfits, reflection_window, relative_l2, trace_correlation

    thr = cfg.evaluate.salt_threshold
    rows = [i for i in range(len(obs.velocity)) if (obs.velocity[i] > thr).mean() >= 0.02][:n_max]
    if not rows:
        print("no test model with salt: salt-base sensitivity skipped")
        return
    truth = obs.velocity[rows]
    models = np.concatenate([np.stack([raise_salt_base(v, cells, thr) for v in truth]),
                             np.stack([remove_salt(v, thr) for v in truth]), baseline[None]])
    data = simulate(models, obs.survey, device=str(device), models_per_call=cfg.survey.models_per_call)
    n = len(rows)
    observed, window = obs.gathers[rows], reflection_window(truth, obs.survey)

    def misfits(d):  # [4, n]: raw rel. L2, raw 1 - corr, reflection rel. L2, reflection 1 - corr
        r = reflection_misfits(d, observed, window)
        return np.stack([relative_l2(d, observed), 1 - trace_correlation(d, observed), r["rel_l2"],
                         1 - r["trace_corr"]])

    moved, nosalt = misfits(data[:n]), misfits(data[n:2 * n])
    mean = misfits(np.broadcast_to(data[-1], (n, *data.shape[1:])))
    print(f"### Salt-base sensitivity: salt base raised by {cells} cells ({cells * obs.survey.dx:g} m), "
          f"test rows {', '.join(map(str, rows))}")
    print()
    print("| normalisation | raw rel. L2 | reflection rel. L2 | gain | raw 1 - corr | reflection 1 - corr | gain |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, m in (("own scale (the misfit itself)", moved), ("/ misfit of the model without salt", moved / nosalt),
                     ("/ misfit of the mean model", moved / mean)):
        med = np.median(m, axis=1)
        gains = np.median(m[2] / m[0]), np.median(m[3] / m[1])
        print(f"| {label} | {med[0]:.4g} | {med[2]:.4g} | {gains[0]:.1f}x | {med[1]:.3g} | {med[3]:.3g} | "
              f"{gains[1]:.1f}x |")
    print()
    print("medians over the models; gain = median over models of reflection / raw")
    print()


def first_reaching(history: list[float], target: float) -> int | None:
    """Iterations (0 = the start) until the model error is at or below ``target``."""
    for i, value in enumerate(history):
        if value <= target:
            return i
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="workflows/config/default.yaml")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--predictions", default=None, help="a predictions.h5 of a trained run (default: the "
                        "best seed-0 run of the config's study under results/, else a proxy)")
    parser.add_argument("--proxy", action="store_true", help="use the proxy prediction even if trained runs exist")
    parser.add_argument("--samples", type=int, default=8, help="samples in the physics-check timing")
    parser.add_argument("--repeats", type=int, default=3, help="physics-check timings (each: ours, then bare)")
    parser.add_argument("--iterations", type=int, default=5, help="iterations per FWI timing")
    parser.add_argument("--payoff-samples", type=int, default=2)
    parser.add_argument("--base-cells", type=int, default=3, help="cells the salt base is raised by in table 4")
    parser.add_argument("--skip-fwi", action="store_true", help="stop after the physics check and table 4")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: study.threads)")
    parser.add_argument("--payoff-iterations", type=int, default=15,
                        help="Adam iterations from the prediction; the conventional start gets twice as many")
    args = parser.parse_args()

    cfg = load_config(args.config)
    # One thread per job, as the study runs: deepwave's OpenMP threads collapse when the cores
    # are shared (measured 10 s instead of 0.95 s per gradient with 2 threads on a loaded 2-core box).
    torch.set_num_threads(args.threads or cfg.study.threads)
    device = resolve_device(args.device)
    torch.manual_seed(0)
    tmp = tempfile.TemporaryDirectory(prefix="bench_physics_")
    found = Path(args.predictions) if args.predictions else None if args.proxy else find_run_predictions(cfg)
    if found is not None:
        preds_path, source = found, f"trained network: {found}"
        metrics = found.with_name("metrics.json")
        if metrics.is_file():
            source += f" (test MAE {json.loads(metrics.read_text())['mean']['mae_ms']:.1f} m/s)"
    else:
        why = "--proxy" if args.proxy else f"no trained run under {Path(cfg.study.results_dir) / cfg.study.name}"
        cfg, preds_path = proxy_predictions(cfg, Path(tmp.name), args.samples)
        source = f"PROXY ({why}): the truth smoothed with a {PROXY_SIGMA_M:g} m Gaussian, not a network"
    preds = read_predictions(preds_path)
    n = min(args.samples, len(preds))
    obs = read_samples(preds.shards, preds.index[:n])
    survey = obs.survey
    print(f"machine: {cpu_name()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, "
          f"deepwave {deepwave.__version__}, device {device}")
    print(f"survey: {survey.nz}x{survey.nx} cells at {survey.dx:g} m, {survey.n_shots} shots, "
          f"{survey.n_receivers} receivers, {survey.nt} samples at {survey.dt:g} s, accuracy {survey.accuracy}, "
          f"{survey.inner_steps()} inner steps per sample; models per call {cfg.survey.models_per_call}")
    print(f"predictions: {source}")
    print(f"load average at start (other jobs share the cores): {os.getloadavg()[0]:.1f}")
    print()

    # ---- 1. physics check vs bare deepwave -----------------------------------------------------
    baseline, _ = mean_model(cfg, str(preds.attrs.get("dataset") or cfg.study.dataset), survey.nz, survey.nx)
    models = np.concatenate([np.clip(preds.prediction[:n], cfg.geology.vmin, survey.max_vel), obs.velocity,
                             baseline[None]])
    physics_check(cfg, preds, samples=n, device=str(device))  # warm-up (allocator, file cache)
    ours, bare = [], []
    for _ in range(args.repeats):
        sync(device)
        t0 = time.perf_counter()
        result = physics_check(cfg, preds, samples=n, device=str(device))
        sync(device)
        ours.append(time.perf_counter() - t0)
        bare.append(bare_forward(models, survey, device, cfg.survey.models_per_call))
    t_ours, t_bare = statistics.median(ours), statistics.median(bare)
    ratio = statistics.median(b / o for b, o in zip(bare, ours))  # per pair: robust to load drift
    print(f"### Physics check ({n} samples: {2 * n + 1} models simulated; medians of {args.repeats} "
          f"alternating runs, ratio = median of per-pair ratios)")
    print()
    print("| device | ours s/sample | bare deepwave s/sample | bare / ours |")
    print("|---|---:|---:|---:|")
    print(f"| {device} | {t_ours / n:.4f} | {t_bare / n:.4f} | {ratio:.3f} |")
    m = result.summary["mean"]
    print()
    print(f"misfits: prediction rel. L2 {m['rel_l2']:.4f} (trace corr {m['trace_corr']:.4f}), mean model "
          f"{m['baseline_rel_l2']:.4f} ({m['baseline_trace_corr']:.4f}), true model {m['true_rel_l2']:.1e}")
    print(f"reflection misfits: prediction rel. L2 {m['rel_l2_reflection']:.4f} (trace corr "
          f"{m['trace_corr_reflection']:.4f}), mean model {m['baseline_rel_l2_reflection']:.4f} "
          f"({m['baseline_trace_corr_reflection']:.4f}), true model {m['true_rel_l2_reflection']:.1e}")
    print()

    # ---- 4. salt-base sensitivity of the raw and the reflection misfits ------------------------
    salt_base_sensitivity(cfg, obs, baseline, device, args.base_cells)
    if args.skip_fwi:
        return tmp.cleanup()

    # ---- 2. FWI iteration ----------------------------------------------------------------------
    vmin, vmax = float(cfg.geology.vmin), min(float(cfg.geology.vmax), survey.max_vel)
    start = np.clip(preds.prediction[0], vmin, vmax)
    kw = dict(vmin=vmin, vmax=vmax, truth=obs.velocity[0], device=device)
    plan = plan_memory(survey, device)
    compressed = MemoryPlan(survey.n_shots, {"storage_compression": True}, 0, 0)

    def per_iteration(iterations: int, **extra) -> float:
        res = refine(start, obs.gathers[0], survey, **kw, iterations=iterations, **extra)
        return sum(s["seconds"] for s in res.stages) / res.iterations

    adam = dict(optimizer="adam", lr=cfg.physics.refine.lr)
    ours, grads = [], []
    for _ in range(args.iterations):  # one iteration of ours, one bare gradient, alternately
        ours.append(per_iteration(1, **adam, memory=plan))
        grads.append(bare_gradient(start, obs.gathers[0], survey, device))
    t_grad = statistics.median(grads)
    adam_ratio = statistics.median(g / o for g, o in zip(grads, ours))
    rows = [("Adam", statistics.median(ours)),
            ("L-BFGS (per evaluation)", per_iteration(args.iterations, optimizer="lbfgs", memory=plan)),
            ("Adam, compressed storage", per_iteration(args.iterations, **adam, memory=compressed))]
    print(f"### FWI iteration (one model, {survey.n_shots} shots; medians of {args.iterations} iterations "
          f"alternating with bare gradients; L-BFGS and compressed: means of {args.iterations})")
    print()
    print("| device | optimiser | s/iteration | bare deepwave forward+backward s | bare / ours |")
    print("|---|---|---:|---:|---:|")
    for label, sec in rows:
        ratio = adam_ratio if label == "Adam" else t_grad / sec
        print(f"| {device} | {label} | {sec:.3f} | {t_grad:.3f} | {ratio:.3f} |")
    print()

    # ---- 3. payoff -------------------------------------------------------------------------------
    k = args.payoff_iterations
    sigma = cfg.physics.refine.smooth_sigma
    print(f"### Payoff: Adam (lr {cfg.physics.refine.lr:g} m/s) from the prediction ({k} iterations) vs from "
          f"the truth smoothed by {sigma:g} m ({2 * k} iterations)")
    print()
    marks = (k // 2, k, 2 * k)
    print(f"| sample | start | MAE at start (m/s) | after {marks[0]} | after {marks[1]} | after {marks[2]} | "
          f"iterations to reach the prediction's start MAE | iterations to reach the prediction's final MAE |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    p = min(args.payoff_samples, n)
    for i in range(p):
        truth = obs.velocity[i]
        pred_start = np.clip(preds.prediction[i], vmin, vmax)
        conv_start = starting_model("smooth", dx=survey.dx, truth=truth, sigma_m=sigma)
        common = dict(vmin=vmin, vmax=vmax, truth=truth, device=device, memory=plan, lr=cfg.physics.refine.lr)
        a = refine(pred_start, obs.gathers[i], survey, iterations=k, **common)
        b = refine(conv_start, obs.gathers[i], survey, iterations=2 * k, **common)
        ha, hb = a.mae_history + [a.final["mae_ms"]], b.mae_history + [b.final["mae_ms"]]

        def at(h, it):
            return f"{h[it]:.1f}" if it < len(h) else "-"

        reach0 = first_reaching(hb, ha[0])
        reach1 = first_reaching(hb, ha[-1])
        fmt = lambda r: str(r) if r is not None else f"> {2 * k}"
        cols = lambda h: " | ".join(at(h, it) for it in marks)
        print(f"| {int(preds.index[i])} | prediction | {ha[0]:.1f} | {cols(ha)} | 0 | {k} |")
        print(f"| {int(preds.index[i])} | smoothed truth | {hb[0]:.1f} | {cols(hb)} | {fmt(reach0)} | {fmt(reach1)} |")
    print(f"load average at end: {os.getloadavg()[0]:.1f}")
    tmp.cleanup()


if __name__ == "__main__":
    main()
