"""Prediction with a trained network: a checkpoint together with the normalisation it was
trained with, applied to a user's gathers (``fwi-attn predict``).

Gathers of another record length or receiver count are resampled to the network's input, and
the predicted velocity back to the data's grid; shards of several files are predicted in one
call and written to one predictions file.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from fwi_attn.config import resolve_device
from fwi_attn.data.simulate import survey_from_shard
from fwi_attn.data.store import read_shard, write_predictions
from fwi_attn.data.survey import Survey, acquisition_differences, check_acquisition



class InferenceError(ValueError):
    """The checkpoint, the normalisation and the data of a prediction do not fit together."""


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
        InferenceError: nothing given, or a folder without ``*.h5`` files.
    """
    entries = [data] if isinstance(data, (str, os.PathLike)) else list(data)
    if not entries:
        raise InferenceError("no data shards given; pass --data SHARD.h5 or a folder of shards")
    skip = Path(skip).resolve() if skip is not None else None
    paths: list[str | os.PathLike] = []
    for entry in entries:
        if Path(entry).is_dir():
            found = sorted(p for p in Path(entry).glob("*.h5")
                           if not p.name.startswith(".") and p.is_file() and p.resolve() != skip)
            if not found:
                raise InferenceError(f"--data {entry} is a folder without *.h5 shards; give shard files or a "
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
    :func:`resample_gathers`), normalised as in training (:class:`fwi_attn.data.dataset.Normalizer`
    from ``stats``, checked against the checkpoint's own record of it), passed through the
    network, mapped back to m/s within ``[vmin, vmax]`` and resampled to the shards' grid.
    The checkpoint is loaded once; shards are read one at a time.

    Args:
        checkpoint: ``model.pt`` (see :func:`fwi_attn.nn.models.load_model`).
        data: an fwi-attn shard (e.g. from ``fwi-attn simulate``), a folder of ``*.h5`` shards, or
            a sequence of either (folders give their ``*.h5`` files sorted by name); every shard
            must share one acquisition.
        stats: the ``stats.json`` the network was trained with; None: the checkpoint's record.
        out: predictions file (schema ``fwi-attn-predictions/1``): ``[n, nz, nx]`` for the ``n``
            samples of all shards in order, ``index`` counting through them, ``target`` the shards'
            velocity, and the attribute ``shards`` listing the shards read.

    Raises:
        InferenceError: no shards, the network takes another number of shots, or ``stats`` disagrees
            with the normalisation stored in the checkpoint.
        AcquisitionError: shards recorded with different acquisitions.
        ShardError: a missing or invalid shard.
    """
    from fwi_attn.data.dataset import Normalizer, load_stats
    from fwi_attn.nn.models import load_model

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
        raise InferenceError(f"{checkpoint} takes {size['in_shots']} shots per sample but {metas[0].path} has "
                           f"{survey.n_shots}; simulate the model with the config the network was trained on")
    saved = extra.get("normalization")
    if stats is not None:
        norm = Normalizer.from_stats(load_stats(stats))
        if saved is not None:
            ours, theirs = norm.to_dict(), Normalizer.from_dict(saved).to_dict()
            if not np.allclose(list(ours.values()), list(theirs.values()), rtol=1e-6):
                raise InferenceError(f"{stats} ({_describe(ours)}) is not the normalisation {checkpoint} was "
                                   f"trained with ({_describe(theirs)}); pass the stats.json of its training data")
    elif saved is not None:
        norm = Normalizer.from_dict(saved)
    else:
        raise InferenceError(f"{checkpoint} holds no normalisation record: pass --stats")

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
