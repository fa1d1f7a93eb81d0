"""``gathers.h5`` (schema ``fwi-attn-gathers/1``): the showcase sample of a physics check, its
recorded gathers beside those re-simulated from the prediction and from the mean model, so that the
comparison figures draw them without simulating. Written by ``fwi-attn physics``; layout:
:class:`Showcase`; checksums of :mod:`fwi_attn.io.hdf5`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fwi_attn.io.files import write_sealed_h5
from fwi_attn.io.hdf5 import open_result, verify_data
from fwi_attn.layout import RUN

GATHERS_SCHEMA = "fwi-attn-gathers/1"


class GathersError(ValueError):
    """A ``gathers.h5`` is unreadable, of another schema or inconsistent."""


@dataclass
class Showcase:
    """The showcase sample of a physics check (the one the comparison figures show): its data
    and models, the content of ``gathers.h5``.

    Attributes:
        index: the sample's index within the split (counting through its shards in order).
        observed: its recorded gathers ``[shot, time, receiver]``.
        predicted: the gathers re-simulated from the (clipped) prediction ``[shot, time, receiver]``.
        baseline: the gathers of the train split's mean model ``[shot, time, receiver]``.
        truth, prediction: the true and the predicted model ``[nz, nx]`` in m/s (the prediction
            clipped as simulated).
        dt: time step (s); dx: grid spacing (m).
        source_xz, receiver_xz: ``[shot, 2]`` and ``[receiver, 2]`` positions (m).
        attrs: the file's attributes when read from one (``variant``, ``seed``, ``dataset``, ...).
    """

    index: int
    observed: np.ndarray
    predicted: np.ndarray
    baseline: np.ndarray
    truth: np.ndarray
    prediction: np.ndarray
    dt: float
    dx: float
    source_xz: np.ndarray
    receiver_xz: np.ndarray
    attrs: dict = field(default_factory=dict)
    path: Path | None = None


SHOWCASE_ARRAYS = ("observed", "predicted", "baseline", "truth", "prediction", "source_xz", "receiver_xz")


def write_gathers(path: str | os.PathLike, showcase: Showcase) -> Path:
    """Write a ``gathers.h5`` (schema ``fwi-attn-gathers/1``) atomically: the arrays of a
    :class:`Showcase` as datasets (float32; positions float64), ``index``, ``dt``, ``dx`` and
    ``showcase.attrs`` (``variant``, ``seed`` (-1 for none), ``dataset``, ``predictions``,
    ``baseline``) as attributes."""
    path = Path(path)
    attrs = {k: v for k, v in showcase.attrs.items() if v is not None}
    attrs.update(schema=GATHERS_SCHEMA, index=int(showcase.index), dt=float(showcase.dt), dx=float(showcase.dx),
                 seed=-1 if showcase.attrs.get("seed") is None else int(showcase.attrs["seed"]))
    arrays = {name: np.asarray(getattr(showcase, name), dtype=np.float64 if name.endswith("_xz") else np.float32)
              for name in SHOWCASE_ARRAYS}
    return write_sealed_h5(path, arrays, attrs)


def read_gathers(path: str | os.PathLike) -> Showcase:
    """Read and check a ``gathers.h5``.

    Raises:
        FileNotFoundError: no such file.
        GathersError: not readable, another schema, missing pieces or inconsistent shapes.
    """
    path = Path(path)
    fix = "rerun `fwi-attn physics` for this run"
    writer = f"`fwi-attn physics --predictions DIR/{RUN.predictions} --out DIR`"
    with open_result(path, GATHERS_SCHEMA, error=GathersError, what="gathers file", writer=writer) as (f, attrs):
        missing = [k for k in ("index", "dt", "dx") if k not in attrs] + [k for k in SHOWCASE_ARRAYS if k not in f]
        if missing:
            raise GathersError(f"{path}: missing {', '.join(missing)}; {fix}")
        arrays = {k: f[k][()] for k in SHOWCASE_ARRAYS}
        verify_data(f, path, writer=writer, arrays=arrays)
    shape = arrays["observed"].shape
    problems = [f"{k} {list(arrays[k].shape)}" for k in ("predicted", "baseline") if arrays[k].shape != shape]
    if len(shape) != 3:
        problems.append(f"observed {list(shape)} is not [shot, time, receiver]")
    else:
        if arrays["source_xz"].shape != (shape[0], 2):
            problems.append(f"source_xz {list(arrays['source_xz'].shape)} for {shape[0]} shots")
        if arrays["receiver_xz"].shape != (shape[2], 2):
            problems.append(f"receiver_xz {list(arrays['receiver_xz'].shape)} for {shape[2]} receivers")
    if arrays["truth"].ndim != 2 or arrays["prediction"].shape != arrays["truth"].shape:
        problems.append(f"truth {list(arrays['truth'].shape)} and prediction {list(arrays['prediction'].shape)} "
                        f"are not one [nz, nx] grid")
    if problems:
        raise GathersError(f"{path}: inconsistent shapes ({'; '.join(problems)}); {fix}")
    seed = attrs.get("seed")
    meta = {k: v for k, v in attrs.items() if k not in ("index", "dt", "dx")}
    meta["seed"] = None if seed in (None, -1) else int(seed)
    return Showcase(index=int(attrs["index"]), dt=float(attrs["dt"]), dx=float(attrs["dx"]), attrs=meta, path=path,
                    **{k: (v.astype(np.float32) if not k.endswith("_xz") else v) for k, v in arrays.items()})
