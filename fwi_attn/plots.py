"""Figures: PNG at 150 dpi, velocity in km/s on one fixed colour scale, axes in metres/seconds.

Every figure is written atomically (temporary file, then rename).
"""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fwi_attn.store import atomic_path  # noqa: E402

DPI = 150
VELOCITY_CMAP = "turbo"
GATHER_CMAP = "gray"


def save_figure(fig, path: str | os.PathLike) -> None:
    """Save ``fig`` as PNG atomically and close it."""
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=DPI, bbox_inches="tight", format="png")
    plt.close(fig)


def velocity_extent(nz: int, nx: int, dx: float) -> list[float]:
    """imshow extent in km: x from 0 to (nx-1)dx, depth downwards."""
    return [0, (nx - 1) * dx / 1000, (nz - 1) * dx / 1000, 0]


def show_velocity(ax, velocity: np.ndarray, dx: float, vmin: float, vmax: float, title: str = ""):
    """Draw a ``[nz, nx]`` model (m/s) in km/s on a fixed colour scale; returns the image."""
    nz, nx = velocity.shape
    im = ax.imshow(velocity / 1000, cmap=VELOCITY_CMAP, vmin=vmin / 1000, vmax=vmax / 1000,
                   extent=velocity_extent(nz, nx, dx), aspect="equal")
    ax.set_xlabel("x (km)")
    ax.set_ylabel("depth (km)")
    if title:
        ax.set_title(title, fontsize=9)
    return im


def show_gather(ax, gather: np.ndarray, dt: float, receiver_x: np.ndarray, title: str = "",
                clip: float | None = None, percentile: float = 98.0):
    """Draw one shot gather ``[time, receiver]`` with a symmetric clip (percentile of |amplitude|)."""
    clip = clip if clip is not None else float(np.percentile(np.abs(gather), percentile)) or 1.0
    nt = gather.shape[0]
    im = ax.imshow(gather, cmap=GATHER_CMAP, vmin=-clip, vmax=clip, aspect="auto",
                   extent=[receiver_x[0] / 1000, receiver_x[-1] / 1000, (nt - 1) * dt, 0])
    ax.set_xlabel("receiver x (km)")
    ax.set_ylabel("time (s)")
    if title:
        ax.set_title(title, fontsize=9)
    return im


def plot_preview(shard, out: str | os.PathLike, n_models: int = 4, vmin: float | None = None,
                 vmax: float | None = None) -> None:
    """Models of a loaded :class:`fwi_attn.store.Shard` (top row) with their middle-shot gathers (below).

    The gather's clip is taken from the late part of the record so that reflections
    and diffractions stay visible beside the much stronger direct wave.
    """
    n = min(n_models, shard.n)
    cfg = shard.config
    vmin = vmin if vmin is not None else cfg["geology"]["vmin"]
    vmax = vmax if vmax is not None else cfg["geology"]["vmax"]
    dx, dt = float(shard.attrs["dx"]), float(shard.attrs["dt"])
    shot = shard.n_shots // 2
    fig, axes = plt.subplots(2, n, figsize=(3.2 * n, 6.4), squeeze=False, constrained_layout=True)
    for i in range(n):
        im = show_velocity(axes[0, i], shard.velocity[i], dx, vmin, vmax, f"model {i}")
        src = shard.source_xz[shot] / 1000
        axes[0, i].plot(src[0], src[1], marker="*", color="white", mec="black", ms=10, clip_on=False)
        gather = shard.gathers[i, shot]
        late = gather[gather.shape[0] // 3:]
        show_gather(axes[1, i], gather, dt, shard.receiver_xz[:, 0],
                    f"shot at x = {shard.source_xz[shot, 0]:g} m", clip=float(np.percentile(np.abs(late), 99.5)))
    fig.colorbar(im, ax=axes[0, :].tolist(), label="velocity (km/s)", shrink=0.8)
    a = shard.attrs
    fig.suptitle(f"{a.get('dataset', '')} / {a.get('split', '')}: {shard.nz}x{shard.nx} cells at {dx:g} m, "
                 f"{shard.n_shots} shots, {shard.n_receivers} receivers, Ricker {float(a['freq']):g} Hz")
    save_figure(fig, out)
