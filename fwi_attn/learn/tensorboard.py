"""TensorBoard event files of a training run, in ``<run dir>/tb/``.

``tensorboard --logdir results/<study>`` then shows every run side by side, named by its folder
(``<variant>/seed<k>/tb``). Per epoch (global step = epochs done, from 1):

* scalars ``loss/train``, ``val/mae`` (OpenFWI's [-1, 1] scale), ``val/ssim``, ``lr`` (the rate
  of the epoch's last step) and ``time/epoch_seconds``: the columns of ``history.csv``;

every ``train.tensorboard`` epochs and at the last one (a plateau stop included):

* image ``velocity/val``: :data:`IMAGE_SAMPLES` fixed validation models (evenly spaced indices,
  the same every time), one row each, true | predicted | absolute error, in m/s on one fixed colour
  scale ``geology.vmin .. vmax`` (error: ``0 .. vmax - vmin``), with the colour bar at the right;
* image ``attention/val``: for a network with spatial attention maps or salt heads, every map
  (:func:`fwi_attn.nn.layers.capture_attention`, resampled onto the velocity grid by the model's
  ``maps_on_model_grid``) of the same samples, one row each, one column per map in forward order,
  on the scale [0, 1]; the text ``attention/columns`` names the columns (module paths).

One panel per kind, one cell per pixel: PNG encoding is most of what the images cost, and
TensorBoard scales them up for viewing (docs/benchmarks.md, ``benchmarks/bench_tensorboard.py``).

Drawing consumes no random number and leaves the training untouched: one float32 forward pass
without gradients in eval mode (BatchNorm statistics are not updated), train mode restored
afterwards; so a run's weights are the same with and without event files. Only rank 0 writes.
A resumed run purges events from the epoch it resumes at (``purge_step``), so an interrupted
epoch's scalars are not doubled; a run started afresh removes the folder's earlier event files.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from fwi_attn.layout import RUN

#: The event files' folder inside a run folder.
TENSORBOARD_DIR = RUN.tensorboard

#: Validation models in the image panels.
IMAGE_SAMPLES = 3

#: Pixels per model cell in the panels (nearest neighbour); 2 doubles the images' cost.
IMAGE_ZOOM = 1

# Viridis at nine stops (matplotlib's values); interpolated linearly between them, which is
# indistinguishable at these panel sizes and spares importing matplotlib in every training job.
_VIRIDIS = np.array([
    [68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141],
    [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]], dtype=np.float32) / 255.0


def colour(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """``values`` ``[...]`` mapped onto viridis over ``lo .. hi`` (clipped): ``[..., 3]`` float32 in [0, 1]."""
    t = np.clip((np.asarray(values, dtype=np.float32) - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    pos = t * (len(_VIRIDIS) - 1)
    i = np.minimum(pos.astype(np.int64), len(_VIRIDIS) - 2)
    frac = (pos - i)[..., None]
    return _VIRIDIS[i] * (1 - frac) + _VIRIDIS[i + 1] * frac


def panel(rows: list[list[np.ndarray]], lo: float, hi: float, zoom: int = IMAGE_ZOOM) -> np.ndarray:
    """Tiles ``rows`` (each a list of ``[h, w]`` maps) in one image with a colour bar at the right.

    Returns:
        ``[H, W, 3]`` float32 in [0, 1] (TensorBoard's ``HWC``); white gaps of one cell between
        tiles; the bar runs from ``lo`` (bottom) to ``hi`` (top).
    """
    gap = max(zoom, 1)
    h, w = rows[0][0].shape
    th, tw = h * zoom, w * zoom
    ncol = max(len(r) for r in rows)
    height = len(rows) * th + (len(rows) - 1) * gap
    bar_w = 3 * zoom
    width = ncol * tw + ncol * gap + bar_w
    img = np.ones((height, width, 3), dtype=np.float32)
    for r, row in enumerate(rows):
        for c, m in enumerate(row):
            tile = colour(m if zoom == 1 else np.kron(m, np.ones((zoom, zoom), dtype=np.float32)), lo, hi)
            y, x = r * (th + gap), c * (tw + gap)
            img[y:y + th, x:x + tw] = tile
    ramp = np.linspace(hi, lo, height, dtype=np.float32)[:, None].repeat(bar_w, axis=1)
    img[:, width - bar_w:] = colour(ramp, lo, hi)
    return img


def fixed_indices(n: int, k: int = IMAGE_SAMPLES) -> list[int]:
    """``k`` evenly spaced indices of ``n`` samples (first and last included), the same every call."""
    return sorted({int(round(i)) for i in np.linspace(0, n - 1, min(k, n))}) if n > 0 else []


class NoBoard:
    """What a run without event files (turned off, or a rank other than 0) logs to: nothing."""

    def epoch(self, row: dict, model: nn.Module, *, last: bool = False) -> None:
        pass

    def close(self) -> None:
        pass


class RunBoard(NoBoard):
    """The event files of one run.

    Args:
        folder: the run folder; events go to ``folder / TENSORBOARD_DIR``.
        val_ds: the validation split (a :class:`~fwi_attn.data.dataset.ShardDataset`): the image
            samples are its :func:`fixed_indices`.
        norm: the run's :class:`~fwi_attn.data.dataset.Normalizer` (velocity back to m/s).
        image_every: image panels every this many epochs (and at the last).
        start: epochs already done (a resumed run): events from step ``start + 1`` on are
            purged; 0 removes the folder's earlier event files.
        device, channels_last: where and in which layout the model takes its inputs.
    """

    def __init__(self, folder: str | Path, val_ds, norm, *, image_every: int, start: int = 0,
                 device: torch.device = torch.device("cpu"), channels_last: bool = False) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.dir = Path(folder) / TENSORBOARD_DIR
        if start == 0 and self.dir.is_dir():
            # A fresh run: an earlier run's curves in the same folder would read as this one's.
            for old in self.dir.glob("events.out.tfevents.*"):
                old.unlink()
        self.writer = SummaryWriter(str(self.dir), purge_step=start + 1 if start else None)
        self.norm, self.image_every = norm, int(image_every)
        self.named_columns = False
        self.device, self.channels_last = device, channels_last
        self.indices = fixed_indices(len(val_ds))
        samples = [val_ds[i] for i in self.indices]
        self.x = torch.stack([torch.as_tensor(s[0]) for s in samples]) if samples else None
        self.truth = (norm.velocity_inverse(torch.stack([torch.as_tensor(s[1]) for s in samples]).float().numpy())
                      if samples else None)

    def epoch(self, row: dict, model: nn.Module, *, last: bool = False) -> None:
        """Log ``row`` (a ``history.csv`` row) at step ``row["epoch"]``; images when due or ``last``."""
        step = int(row["epoch"])
        w = self.writer
        w.add_scalar("loss/train", row["train_loss"], step)
        w.add_scalar("val/mae", row["val_mae"], step)
        w.add_scalar("val/ssim", row["val_ssim"], step)
        w.add_scalar("lr", row["lr"], step)
        w.add_scalar("time/epoch_seconds", row["seconds"], step)
        if self.x is not None and (last or step % self.image_every == 0):
            self.images(model, step)
        w.flush()

    @torch.no_grad()
    def images(self, model: nn.Module, step: int) -> None:
        """The velocity and attention panels of the fixed samples at ``step``."""
        from fwi_attn.nn.layers import capture_attention

        was_training = model.training
        model.eval()
        try:
            x = self.x.to(self.device)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with capture_attention(model) as maps:
                pred = model(x).float()
            if maps and hasattr(model, "maps_on_model_grid"):
                maps = model.maps_on_model_grid({k: m.float() for k, m in maps.items()})
        finally:
            model.train(was_training)
        lo, hi = self.norm.vmin, self.norm.vmax
        pred_ms = self.norm.velocity_inverse(pred.cpu().numpy(), clip=True)
        rows = []
        for truth, p in zip(self.truth[:, 0], pred_ms[:, 0]):
            # The error on the velocity scale's span, shifted so that 0 m/s sits at its bottom.
            rows.append([truth, p, lo + np.abs(p - truth)])
        self.writer.add_image("velocity/val", panel(rows, lo, hi), step, dataformats="HWC")
        if maps:
            columns = [m.cpu().numpy()[:, 0] for m in maps.values()]
            tiles = [[c[k] for c in columns] for k in range(len(self.indices))]
            self.writer.add_image("attention/val", panel(tiles, 0.0, 1.0), step, dataformats="HWC")
            if not self.named_columns:
                self.writer.add_text("attention/columns", ", ".join(maps), step)
                self.named_columns = True

    def close(self) -> None:
        self.writer.close()


def open_board(enabled: bool, folder: str | Path, val_ds, norm, **kwargs) -> NoBoard:
    """A :class:`RunBoard` when ``enabled`` (rank 0 with ``train.tensorboard`` > 0), else a :class:`NoBoard`."""
    return RunBoard(folder, val_ds, norm, **kwargs) if enabled else NoBoard()
