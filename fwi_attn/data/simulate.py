"""Batched 2-D acoustic forward modelling with deepwave, and dataset-shard generation.

The only place where metres become grid cells and where deepwave's
``[shot, receiver, time]`` output is transposed to the project's
``[n, shot, time, receiver]`` order.
"""
from __future__ import annotations

import os
from pathlib import Path

import deepwave
import numpy as np
import torch

from fwi_attn.config import resolve_device
from fwi_attn.data.survey import Survey, check_model_velocity
from fwi_attn.layout import SPLITS, shard_sizes


def cells(xz: np.ndarray, dx: float) -> torch.Tensor:
    """Positions ``[n, 2]`` (x, z) in m -> deepwave cell indices ``[n, 2]`` (z, x), int64."""
    xz = np.asarray(xz, dtype=np.float64)
    return torch.from_numpy(np.round(xz[:, ::-1] / dx).astype(np.int64))


def forward(velocity: torch.Tensor, survey: Survey, source_amplitudes: torch.Tensor | None = None,
            **deepwave_kwargs) -> torch.Tensor:
    """Differentiable forward modelling of a batch of models, every shot of the survey.

    Args:
        velocity: ``[n, nz, nx]`` m/s (any device; may require grad).
        survey: acquisition and discretisation.
        source_amplitudes: ``[nt]`` wavelet; the survey's Ricker by default.
        deepwave_kwargs: passed to :func:`deepwave.scalar` (e.g. storage options).

    Returns:
        Receiver data ``[n, shot, time, receiver]`` on the velocity's device.
    """
    n, nz, nx = velocity.shape
    s, r = survey.n_shots, survey.n_receivers
    dev = velocity.device
    wavelet = survey.wavelet(velocity.dtype) if source_amplitudes is None else source_amplitudes
    amps = wavelet.to(dev).reshape(1, 1, -1).expand(n * s, 1, -1).contiguous()
    src = cells(survey.source_xz, survey.dx).to(dev).reshape(1, s, 1, 2).expand(n, s, 1, 2).reshape(n * s, 1, 2)
    rec = cells(survey.receiver_xz, survey.dx).to(dev).reshape(1, r, 2).expand(n * s, r, 2)
    # Each shot of each model is one deepwave "shot" with its own copy of the model; a single
    # model is passed unbatched, which deepwave shares across shots (less memory, faster gradients).
    v = velocity[0] if n == 1 else velocity.unsqueeze(1).expand(n, s, nz, nx).reshape(n * s, nz, nx)
    p = survey.pml_width
    if survey.free_surface:
        boundary = dict(pml_width=[0, p, p, p], boundary=["free", "pml", "pml", "pml"])
    else:
        boundary = dict(pml_width=p)
    out = deepwave.scalar(
        v, survey.dx, survey.dt,
        source_amplitudes=amps, source_locations=src.contiguous(), receiver_locations=rec.contiguous(),
        accuracy=survey.accuracy, pml_freq=survey.freq, max_vel=survey.max_vel,
        **boundary, **deepwave_kwargs,
    )
    data = out.receiver_amplitudes  # [n*s, receiver, time]
    return data.reshape(n, s, r, -1).transpose(2, 3)


def simulate(velocity: np.ndarray | torch.Tensor, survey: Survey, *, device: str = "auto",
             models_per_call: int = 8, progress: bool = False, where: str = "model") -> np.ndarray:
    """Simulate shot gathers for many velocity models.

    Args:
        velocity: ``[n, nz, nx]`` (or ``[nz, nx]``) in m/s.
        survey: acquisition; every model is checked against ``survey.max_vel`` first.
        device: ``auto``, ``cpu`` or ``cuda``.
        models_per_call: models batched into one deepwave call.
        progress: show a progress bar.
        where: label for error messages.

    Returns:
        float32 ``[n, shot, time, receiver]`` on the host.
    """
    v = torch.as_tensor(np.asarray(velocity) if not isinstance(velocity, torch.Tensor) else velocity,
                        dtype=torch.float32)
    if v.ndim == 2:
        v = v.unsqueeze(0)
    check_model_velocity(v, survey, where)
    dev = resolve_device(device)
    out = np.empty((len(v), survey.n_shots, survey.nt, survey.n_receivers), dtype=np.float32)
    starts = range(0, len(v), models_per_call)
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=len(v), unit="model", desc=f"simulating {where}", leave=False)
    with torch.no_grad():
        for i in starts:
            chunk = v[i:i + models_per_call].to(dev)
            out[i:i + len(chunk)] = forward(chunk, survey).cpu().numpy()
            if progress:
                bar.update(len(chunk))
    if progress:
        bar.close()
    return out


def shard_rng(seed: int, split: str, shard: int) -> np.random.Generator:
    """The generator of one shard, derived from the dataset seed alone.

    Shards can therefore be generated in any order, or in parallel, with the
    same result.
    """
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS.index(split), shard]))


def generate_shard(cfg, dataset: str, split: str, shard: int, out: str | os.PathLike,
                   *, device: str | None = None, progress: bool = False) -> Path:
    """Generate velocity models and their gathers for one shard and write it atomically.

    Args:
        cfg: a validated :class:`fwi_attn.config.Config`.
        dataset: key of ``cfg.datasets``.
        split: ``train``, ``val`` or ``test``.
        shard: shard index within the split.
        out: destination ``.h5`` path.
    """
    from fwi_attn.data.geology import generate_velocity
    from fwi_attn.io.shard import write_shard

    if dataset not in cfg.datasets:
        raise ValueError(f"dataset '{dataset}' is not in the config (defined: {', '.join(cfg.datasets)})")
    if split not in SPLITS:
        raise ValueError(f"split '{split}' must be one of {', '.join(SPLITS)}")
    ds = cfg.datasets[dataset]
    sizes = shard_sizes(ds.samples[split], ds.shard_size)
    if not 0 <= shard < len(sizes):
        raise ValueError(f"{dataset}/{split} has shards 0..{len(sizes) - 1} "
                         f"({ds.samples[split]} samples, shard_size {ds.shard_size}); got shard {shard}")
    survey = Survey.from_config(cfg)
    survey.check(cfg.geology.vmin, cfg.geology.vmax)
    rng = shard_rng(ds.seed, split, shard)
    velocity = generate_velocity(ds.family, sizes[shard], rng, survey.nz, survey.nx, survey.dx,
                                 cfg.geology)  # the Section: validated by load_config, not again
    gathers = simulate(velocity, survey, device=device or cfg.study.device,
                       models_per_call=cfg.survey.models_per_call, progress=progress,
                       where=f"{dataset}/{split}/shard {shard}")
    attrs = shard_attrs(survey, cfg, dataset=dataset, split=split, shard=shard, seed=ds.seed, family=ds.family)
    write_shard(out, velocity, gathers, survey.source_xz, survey.receiver_xz, attrs)
    return Path(out)


def simulate_file(cfg, model: str | os.PathLike, out: str | os.PathLike, *, device: str | None = None,
                  progress: bool = False) -> tuple[Path, int]:
    """Simulate every velocity model of a user's file with ``cfg``'s survey and write one shard.

    The models are read and resampled to the survey's grid by
    :func:`fwi_attn.data.velocity_files.load_velocities`; the shard (atomic) records sample ``i``
    as model ``source_index[i]`` of the file, with dataset = the file's stem, split ``user``.

    Args:
        cfg: a validated :class:`fwi_attn.config.Config`.
        model: the velocity-model file (m/s): ``.npy``, ``.h5``/``.hdf5``, ``.sgy``/``.segy``, ``.mat``.
        out: destination ``.h5`` path; checked writable, with room, before any simulation.
        device: overrides ``study.device``.

    Returns:
        ``(out, n)``: the shard's path and its number of models.
    """
    from fwi_attn.data.velocity_files import load_velocities
    from fwi_attn.io.files import check_output, check_space
    from fwi_attn.io.shard import shard_nbytes, write_shard

    survey = Survey.from_config(cfg)
    check_output(out)  # an unwritable path fails now, not after minutes of simulation
    velocity = load_velocities(model, survey.nz, survey.nx)  # [n, nz, nx] m/s
    n = len(velocity)
    check_space(out, shard_nbytes(n, survey.n_shots, survey.nt, survey.n_receivers, survey.nz, survey.nx))
    survey.check(float(velocity.min()), float(velocity.max()))
    gathers = simulate(velocity, survey, device=device or cfg.study.device,
                       models_per_call=cfg.survey.models_per_call, progress=progress, where=str(model))
    attrs = shard_attrs(survey, cfg, dataset=Path(model).stem, split="user", shard=0, seed=-1,
                        family="import", source=str(model),
                        source_index=np.arange(n, dtype=np.int64).tolist())
    write_shard(out, velocity, gathers, survey.source_xz, survey.receiver_xz, attrs)
    return Path(out), n


def shard_attrs(survey: Survey, cfg, *, dataset: str, split: str, shard: int, seed: int, family: str,
                **extra) -> dict:
    """The attributes of a shard (:func:`fwi_attn.io.shard.write_shard` adds ``schema`` and ``versions``).

    The one place they are built, for generated shards (:func:`generate_shard`) and simulated
    user models (``fwi-attn simulate``) alike, so both carry the same set and
    :func:`survey_from_shard` can rebuild the acquisition of either.

    Args:
        survey: the acquisition the gathers were simulated with: ``dx`` (m), ``dt`` (s), ``nt``,
            ``freq`` (Hz), ``peak_time`` (s), ``accuracy``, ``free_surface``, ``max_vel`` (m/s).
        cfg: the resolved :class:`fwi_attn.config.Config`; stored whole as ``config``.
        dataset, split, shard: where the shard belongs (``split`` ``user`` for imported models).
        seed: the dataset's root seed (-1 when no generator made the models).
        family: the velocity-model family (``import`` for user models).
        extra: further attributes (e.g. ``source``, ``source_index``); they may not replace a
            standard one.

    Returns:
        A dict, in the order the attributes are written (lists and dicts become JSON strings).
    """
    attrs = dict(dx=survey.dx, dt=survey.dt, nt=survey.nt, freq=survey.freq, peak_time=survey.peak_time,
                 seed=seed, config=cfg.to_dict(), dataset=dataset, split=split, shard=shard,
                 family=family, accuracy=survey.accuracy, free_surface=survey.free_surface,
                 max_vel=survey.max_vel)
    clash = sorted(set(extra) & (set(attrs) | {"schema", "versions"}))
    if clash:
        raise ValueError(f"shard_attrs: extra attribute(s) {', '.join(clash)} would replace standard ones; "
                         f"give them another name")
    return {**attrs, **extra}


def survey_from_shard(shard) -> Survey:
    """Rebuild the exact acquisition a shard was simulated with (for re-simulation)."""
    a = shard.attrs
    return Survey(nz=shard.nz, nx=shard.nx, dx=float(a["dx"]), dt=float(a["dt"]), nt=int(a["nt"]),
                  freq=float(a["freq"]), peak_time=float(a["peak_time"]), source_xz=shard.source_xz,
                  receiver_xz=shard.receiver_xz, free_surface=bool(a["free_surface"]),
                  accuracy=int(a["accuracy"]), pml_width=int(shard.config["survey"]["pml_width"]),
                  max_vel=float(a["max_vel"]))
