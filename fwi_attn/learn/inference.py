"""Prediction with a trained network: a checkpoint together with the normalisation it was
trained with (:class:`Predictor`), applied to a test split (``fwi-attn evaluate``) or to a
user's gathers (``fwi-attn predict``).

The :class:`Predictor` is the one place where the checkpoint-plus-normalisation contract lives:
the normaliser is the checkpoint's own record of it (``normalization``, written by training); a
``stats.json`` given as well is only cross-checked against that record. For ``fwi-attn predict``,
gathers of another record length or receiver count are resampled to the network's input, and
the predicted velocity back to the data's grid; shards of several files are predicted in one
call and written to one predictions file.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from fwi_attn.config import resolve_device
from fwi_attn.data.survey import Survey, acquisition_differences, check_acquisition
from fwi_attn.io.predictions import write_predictions
from fwi_attn.io.shard import read_shard


class InferenceError(ValueError):
    """The checkpoint, the normalisation and the data of a prediction do not fit together."""


# ----------------------------------------------------------------------------- the predictor


def _describe(norm: dict) -> str:
    return (f"gathers [{norm['gathers_min']:.6g}, {norm['gathers_max']:.6g}], velocity [{norm['vmin']:g}, "
            f"{norm['vmax']:g}], gain {norm['gain_scale']:g} (t/T)^{norm['gain_power']:g}")


def checkpoint_normalizer(checkpoint: str | os.PathLike, saved: dict | None, stats: str | os.PathLike | None,
                          fallback_stats: str | os.PathLike | None = None):
    """The :class:`~fwi_attn.data.normalize.Normalizer` a checkpoint was trained with.

    Args:
        checkpoint: the checkpoint's path (for messages).
        saved: its ``normalization`` record (None: a checkpoint from elsewhere, without one).
        stats: a ``stats.json`` to cross-check the record against (or, without a record, to use).
        fallback_stats: used only when there is neither a record nor ``stats``.

    Raises:
        InferenceError: ``stats`` disagrees with the record (relative tolerance 1e-6), or there is
            neither a record nor a stats file.
        StatsError: an unreadable ``stats`` file.
    """
    from fwi_attn.data.normalize import Normalizer
    from fwi_attn.io.stats import load_stats

    if saved is not None:
        norm = Normalizer.from_dict(saved)
        if stats is not None:
            ours, theirs = Normalizer.from_stats(load_stats(stats)).to_dict(), norm.to_dict()
            if not np.allclose(list(ours.values()), list(theirs.values()), rtol=1e-6):
                raise InferenceError(f"{stats} ({_describe(ours)}) is not the normalisation {checkpoint} was "
                                     f"trained with ({_describe(theirs)}); pass the stats.json of its training data")
        return norm
    if stats is None and fallback_stats is None:
        raise InferenceError(f"{checkpoint} holds no normalisation record: pass --stats")
    return Normalizer.from_stats(load_stats(stats if stats is not None else fallback_stats))


class Predictor:
    """A trained network together with the normaliser it was trained with.

    Maps raw gathers ``[n, shot, time, receiver]`` (amplitudes as simulated) to velocity in m/s
    ``[n, nz, nx]``: gathers normalised as in training, the network run in float32 batches in eval
    mode without gradients (metrics should measure the network, not bf16 rounding, even where
    training used bf16 autocast), its output mapped back to m/s within ``[vmin, vmax]``. It also
    captures the spatial attention maps of given samples (:meth:`attention`).

    Args:
        model: a network mapping ``[B, shot, time, receiver]`` to ``[B, 1, nz, nx]`` on [-1, 1]
            (with a ``config`` dict of its sizes, as :func:`fwi_attn.nn.models.create_model` builds).
        normalizer: the :class:`~fwi_attn.data.normalize.Normalizer` it was trained with.
        device: where the network runs (``auto``, ``cpu``, ``cuda`` or a ``torch.device``).
        channels_last: run the network and its inputs in that memory format (faster convolutions).
        checkpoint: where the network came from (for messages and records).
        extra: the checkpoint's other keys (``variant``, ``seed``, ``epoch``, ``macs``, ...).
    """

    SIZES = ("in_shots", "nt", "n_receivers", "nz", "nx")

    def __init__(self, model: torch.nn.Module, normalizer, *, device: str | torch.device = "cpu",
                 channels_last: bool = False, checkpoint: str | os.PathLike = "", extra: dict | None = None):
        self.device = resolve_device(device)
        self.channels_last = bool(channels_last)
        self.model = model.eval().to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.normalizer = normalizer
        self.checkpoint = str(checkpoint)
        self.extra = dict(extra or {})

    @classmethod
    def load(cls, checkpoint: str | os.PathLike, stats: str | os.PathLike | None = None, *,
             fallback_stats: str | os.PathLike | None = None, device: str | torch.device = "auto",
             channels_last: bool = False) -> Predictor:
        """Load ``checkpoint`` (``model.pt``) with its normaliser (see :func:`checkpoint_normalizer`).

        Raises:
            FileNotFoundError / CheckpointError: a missing or unreadable checkpoint.
            InferenceError: ``stats`` is not the normalisation it was trained with, or it has none.
        """
        from fwi_attn.nn.models import load_model

        model, extra = load_model(checkpoint, map_location="cpu")
        norm = checkpoint_normalizer(checkpoint, extra.get("normalization"), stats, fallback_stats)
        return cls(model, norm, device=device, channels_last=channels_last, checkpoint=checkpoint, extra=extra)

    # -- what the network is ------------------------------------------------------------
    @property
    def shape(self) -> dict[str, int]:
        """The network's sizes: ``in_shots, nt, n_receivers`` of its input, ``nz, nx`` of its output."""
        return {k: int(self.model.config[k]) for k in self.SIZES}

    @property
    def variant(self) -> str:
        return str(self.extra.get("variant", getattr(self.model, "variant", "")))

    @property
    def pad(self) -> tuple[int, int, int, int]:
        """Cells ``(left, right, top, bottom)`` the network pads its grid by: attention maps cover the
        padded grid, and cropping them by this much gives the velocity model's extent."""
        return tuple(int(p) for p in getattr(self.model, "pad", (0, 0, 0, 0)))

    # -- the pieces of one prediction -------------------------------------------------------
    def inputs(self, gathers: np.ndarray | torch.Tensor) -> torch.Tensor:
        """Raw gathers ``[B, shot, time, receiver]`` -> the network's input: float32 on [-1, 1] (for
        train-split values) on the device, in channels_last when set. Another record length or
        receiver count is resampled to the network's first (:func:`resample_gathers`)."""
        size = self.shape
        if tuple(gathers.shape[-2:]) != (size["nt"], size["n_receivers"]):
            g = gathers if isinstance(gathers, torch.Tensor) else torch.as_tensor(gathers)
            gathers = resample_gathers(g.float(), size["nt"], size["n_receivers"])
        if isinstance(gathers, torch.Tensor):
            gathers = gathers.cpu().numpy()
        x = torch.from_numpy(self.normalizer.gathers(gathers)).to(self.device)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network on a normalised input: float32 ``[B, 1, nz, nx]`` on [-1, 1], unclipped."""
        return self.model(x).float()

    def velocity(self, y: torch.Tensor, clip: bool = True) -> torch.Tensor:
        """The network's output ``[B, 1, nz, nx]`` -> m/s, clipped to ``[vmin, vmax]`` unless
        ``clip`` is False (evaluation scores the raw output)."""
        return self.normalizer.velocity_inverse(y, clip=clip)

    # -- whole predictions --------------------------------------------------------------
    @torch.no_grad()
    def predict_batches(self, batches: Iterable, n: int, *, grid: tuple[int, int] | None = None,
                        timed: bool = False, progress: bool = False, clip: bool = True) -> tuple[np.ndarray, float]:
        """Predict raw gather batches ``[B, shot, time, receiver]`` (numpy or torch), in order.

        Args:
            batches: the batches; ``n`` samples in all.
            grid: ``(nz, nx)`` to resample the velocity to (default: the network's grid).
            timed: run the first batch once more before timing it (first-call allocations and
                kernel selection), and wait for the GPU around every forward pass.
            progress: a progress bar.
            clip: limit the velocity to ``[vmin, vmax]`` (False: the raw network output, as
                ``fwi-attn evaluate`` scores it).

        Returns:
            ``(velocity, seconds_per_sample)``: float32 ``[n, nz, nx]`` in m/s, and the mean time of the forward passes alone per sample (data
            loading, normalisation and the inverse excluded).
        """
        nz, nx = grid or (self.shape["nz"], self.shape["nx"])
        out = np.empty((n, nz, nx), dtype=np.float32)
        sync = timed and self.device.type == "cuda"
        seconds, i, bar = 0.0, 0, None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=n, unit="sample", desc="predicting", leave=False)
        for b, g in enumerate(batches):
            x = self.inputs(g)
            if timed and b == 0:
                self.forward(x)  # warm-up
            if sync:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            y = self.forward(x)
            if sync:
                torch.cuda.synchronize()
            seconds += time.perf_counter() - t0
            v = resample_velocity(self.velocity(y, clip), nz, nx)
            out[i:i + len(v)] = v[:, 0].cpu().numpy()
            i += len(v)
            if bar is not None:
                bar.update(len(v))
        if bar is not None:
            bar.close()
        if i != n:
            raise InferenceError(f"{self.checkpoint}: the batches held {i} samples, {n} were announced")
        return out, seconds / max(n, 1)

    def predict(self, gathers: np.ndarray, *, batch_size: int = 16, grid: tuple[int, int] | None = None) -> np.ndarray:
        """Velocity float32 ``[n, nz, nx]`` (m/s) for raw gathers ``[n, shot, time, receiver]``, in
        batches of ``batch_size``; ``grid`` as in :meth:`predict_batches`."""
        batches = (gathers[a:a + batch_size] for a in range(0, len(gathers), batch_size))
        return self.predict_batches(batches, len(gathers), grid=grid)[0]

    @torch.no_grad()
    def attention(self, gathers: np.ndarray) -> list[dict[str, np.ndarray]]:
        """The spatial attention maps of each sample of raw gathers ``[n, shot, time, receiver]``.

        One forward pass per sample (so a map never depends on its batch-mates), through
        :func:`fwi_attn.nn.layers.capture_attention`.

        Returns:
            Per sample, ``{module path: float32 [h, w]}`` in forward order, each map on its level's
            resolution of the padded grid (see :attr:`pad`), values in [0, 1] (salt heads' predicted
            salt probability included, ``salt_heads.<level>``); an empty dict for a network without
            spatial attention or salt heads.
        """
        from fwi_attn.nn.layers import capture_attention

        out = []
        for k in range(len(gathers)):
            x = self.inputs(gathers[k:k + 1])
            with capture_attention(self.model) as maps:
                self.model(x)
            out.append({key: m[0, 0].float().cpu().numpy() for key, m in maps.items()})
        return out


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


def shard_paths(data: str | os.PathLike | Sequence[str | os.PathLike],
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
    :func:`resample_gathers`), normalised as in training, passed through the network, mapped back
    to m/s within ``[vmin, vmax]`` and resampled to the shards' grid (a :class:`Predictor`).
    The checkpoint is loaded once; shards are read one at a time.

    Args:
        checkpoint: ``model.pt`` (see :func:`fwi_attn.nn.models.load_model`).
        data: an fwi-attn shard (e.g. from ``fwi-attn simulate``), a folder of ``*.h5`` shards, or
            a sequence of either (folders give their ``*.h5`` files sorted by name); every shard
            must share one acquisition.
        stats: the ``stats.json`` the network was trained with, checked against the checkpoint's
            record of its normalisation; None: the record alone.
        out: predictions file (schema ``fwi-attn-predictions/1``): ``[n, nz, nx]`` for the ``n``
            samples of all shards in order, ``index`` counting through them, ``target`` the shards'
            velocity, and the attribute ``shards`` listing the shards read.

    Raises:
        InferenceError: no shards, the network takes another number of shots, or ``stats`` disagrees
            with the normalisation stored in the checkpoint.
        AcquisitionError: shards recorded with different acquisitions.
        ShardError: a missing or invalid shard.
    """
    from fwi_attn.data.simulate import survey_from_shard

    paths = shard_paths(data, skip=out)
    # Check every shard's metadata before any work: one acquisition (hence one grid) for the
    # whole predictions file, as `fwi-attn physics` / `refine --predictions` require of it.
    metas = [read_shard(p, load=False) for p in paths]
    survey = survey_from_shard(metas[0])
    for m in metas[1:]:
        check_acquisition(survey, survey_from_shard(m), str(metas[0].path), str(m.path))

    predictor = Predictor.load(checkpoint, stats, device=device)
    size, extra = predictor.shape, predictor.extra
    if survey.n_shots != size["in_shots"]:
        raise InferenceError(f"{checkpoint} takes {size['in_shots']} shots per sample but {metas[0].path} has "
                             f"{survey.n_shots}; simulate the model with the config the network was trained on")

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
    for path in paths:
        shard = read_shard(path, load=True)  # one shard in memory at a time
        target[offset:offset + shard.n] = shard.velocity
        prediction[offset:offset + shard.n] = predictor.predict(shard.gathers, batch_size=batch_size,
                                                                grid=(shard.nz, shard.nx))
        offset += shard.n
    splits = list(dict.fromkeys(str(m.attrs.get("split", "user")) for m in metas))  # unique, in order
    return write_predictions(out, prediction, target, np.arange(total),
                             shards=[str(p) for p in paths], variant=predictor.variant,
                             seed=extra.get("seed"), dataset=str(extra.get("dataset", "")),
                             split="+".join(splits), checkpoint=str(checkpoint))


_shard_paths = shard_paths  # its name before it was public, still imported by the command line
