"""A velocity model's *plan* (the per-model parameter arrays that every random draw of
:mod:`fwi_attn.data.geology` fills) and its rendering into velocities with pure numpy.

Rendering draws nothing, so the same plan gives byte-identical models whatever the block of
models rendered at once. Cells are ``(i, j)`` at depth ``i * dx`` and offset ``j * dx``;
velocities are m/s; a plan's depths and widths are in cells.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["N_THETA", "empty_plan", "render"]

# Angular resolution of a salt outline's radius table r(theta); 720 bins keep the
# nearest-bin error below a cell for bodies up to ~110 cells in radius.
N_THETA = 720


def empty_plan(n: int, nz: int, n_layers: int, n_faults: int, n_bodies: int) -> dict:
    """Plan arrays with neutral values: no faults, no salt, no water, one layer."""
    f32 = np.float32
    return {
        # layer velocities (m/s) and interface mean depth / undulation amplitude (cells);
        # unused interfaces sit at +inf so they are never crossed
        "layer_v": np.zeros((n, n_layers), f32),
        "iface_z": np.full((n, max(n_layers - 1, 0)), np.inf, f32),
        "iface_amp": np.zeros((n, max(n_layers - 1, 0)), f32),
        # shared undulation shape f(x) = sum w sin(2 pi c x / nx + phi) / sum w
        "fold_c": np.zeros((n, 3), f32),
        "fold_phi": np.zeros((n, 3), f32),
        "fold_w": np.ones((n, 3), f32),
        # faults: x of the fault trace at mid-depth (cells), dx/dz slope, throw (cells)
        "fault_x": np.zeros((n, n_faults), f32),
        "fault_slope": np.zeros((n, n_faults), f32),
        "fault_throw": np.zeros((n, n_faults), f32),
        # salt bodies (cells): centre, horizontal semi-axis, upper/lower vertical semi-axes,
        # radius table over angle, stem centre and half-width per depth row (-1: no stem)
        "salt_on": np.zeros((n, n_bodies), bool),
        "salt_v": np.zeros((n, n_bodies), f32),
        "salt_cx": np.zeros((n, n_bodies), f32),
        "salt_cz": np.zeros((n, n_bodies), f32),
        "salt_ax": np.ones((n, n_bodies), f32),
        "salt_at": np.ones((n, n_bodies), f32),
        "salt_ab": np.ones((n, n_bodies), f32),
        "salt_r": np.ones((n, n_bodies, N_THETA), f32),
        "stem_x": np.zeros((n, n_bodies, nz), f32),
        "stem_hw": np.full((n, n_bodies, nz), -1.0, f32),
        # water: number of top rows filled with water, and its velocity
        "water_rows": np.zeros(n, np.int64),
        "water_v": np.zeros(n, f32),
    }


def render(plan: dict, nz: int, nx: int) -> np.ndarray:
    """Deterministically paint a block of planned models; returns float32 ``[m, nz, nx]``."""
    if "trend_v0" in plan:
        return _render_province(plan, nz, nx)
    m = plan["layer_v"].shape[0]
    z = np.arange(nz, dtype=np.float32)[None, :, None]
    x = np.arange(nx, dtype=np.float32)[None, None, :]

    z_eff = np.broadcast_to(z, (m, nz, nx)).copy()
    _fault_shift(plan, z_eff, z, x, nz)
    index = _layer_index(plan, z_eff, nx)
    vel = np.take_along_axis(plan["layer_v"], index.reshape(m, -1), axis=1).reshape(m, nz, nx)

    # Salt bodies, later ones on top.
    for b in range(plan["salt_on"].shape[1]):
        sel = np.flatnonzero(plan["salt_on"][:, b])
        if sel.size == 0:
            continue
        inside = _body_inside(plan, sel, b, z, x, nz, nx)
        vel[sel] = np.where(inside, plan["salt_v"][sel, b, None, None], vel[sel])
    return _paint_water(plan, vel, nz).astype(np.float32, copy=False)


def _render_province(plan: dict, nz: int, nx: int) -> np.ndarray:
    """The salt family: salt first (its mask drags the strata), then sediments, salt on top."""
    m = plan["layer_v"].shape[0]
    z = np.arange(nz, dtype=np.float32)[None, :, None]
    x = np.arange(nx, dtype=np.float32)[None, None, :]

    salt_v = np.zeros((m, nz, nx), np.float32)  # 0: no salt
    dragging = np.zeros((m, nz, nx), bool)
    for b in range(plan["salt_on"].shape[1]):
        sel = np.flatnonzero(plan["salt_on"][:, b])
        if sel.size == 0:
            continue
        inside = _body_inside(plan, sel, b, z, x, nz, nx)
        salt_v[sel] = np.where(inside, plan["salt_v"][sel, b, None, None], salt_v[sel])
        dragging[sel] |= inside & plan["salt_drag"][sel, b, None, None]

    # Drag and crestal thinning: strata near rooted salt come from deeper (z_eff > z), most
    # at the contact; above a crest the uplift fades upwards, which thins the strata there.
    z_eff = np.broadcast_to(z, (m, nz, nx)).copy()
    for i in np.flatnonzero(dragging.any(axis=(1, 2)) & (plan["drag_amp"] > 0)):
        blur = ndimage.gaussian_filter(dragging[i].astype(np.float32), float(plan["drag_sigma"][i]), mode="nearest")
        z_eff[i] += plan["drag_amp"][i] * blur
    _fault_shift(plan, z_eff, z, x, nz)
    index = _layer_index(plan, z_eff, nx)
    step = np.take_along_axis(plan["layer_v"], index.reshape(m, -1), axis=1).reshape(m, nz, nx)

    def col(key):
        return plan[key][:, None, None]

    burial = np.maximum(z_eff - col("seabed"), np.float32(0)) + col("trend_b0")
    trend = col("trend_vinf") - (col("trend_vinf") - col("trend_v0")) * np.exp(-burial / col("trend_len"))
    xn = np.arange(nx, dtype=np.float32)[None, None, :] / np.float32(nx)
    lateral = 1 + col("lat_amp") * np.sin(np.float32(2 * np.pi) * col("lat_c") * xn + col("lat_phi"))
    vel = np.minimum((trend + step) * lateral, col("sed_max"))
    vel = np.where(salt_v > 0, salt_v, vel)
    return _paint_water(plan, vel, nz).astype(np.float32, copy=False)


def _fault_shift(plan, z_eff, z, x, nz) -> None:
    """Faults: sample the layering at z - throw on the hanging-wall side of each trace (in place)."""
    for f in range(plan["fault_x"].shape[1]):
        throw = plan["fault_throw"][:, f, None, None]
        trace_x = plan["fault_x"][:, f, None, None] + plan["fault_slope"][:, f, None, None] * (
            z - nz / 2
        )
        z_eff -= np.where(x > trace_x, throw, np.float32(0))


def _layer_index(plan, z_eff, nx) -> np.ndarray:
    """Layer index per cell: the number of interfaces above it. Each indicator is monotone in
    depth, so crossing interfaces pinch out instead of breaking the order."""
    m, nz = z_eff.shape[:2]
    xn = np.arange(nx, dtype=np.float32) / nx
    fold = np.einsum(
        "mk,mkx->mx",
        plan["fold_w"],
        np.sin(2 * np.pi * plan["fold_c"][:, :, None] * xn + plan["fold_phi"][:, :, None]),
    ) / plan["fold_w"].sum(axis=1, keepdims=True)
    index = np.zeros((m, nz, nx), dtype=np.intp)
    for k in range(plan["iface_z"].shape[1]):
        depth_k = plan["iface_z"][:, k, None] + plan["iface_amp"][:, k, None] * fold
        index += z_eff >= depth_k[:, None, :]
    return index


def _body_inside(plan, sel, b, z, x, nz, nx) -> np.ndarray:
    """Cells of body ``b`` in models ``sel``: a star-shaped cap in (semi-axis scaled) polar
    coordinates, plus an optional stem down to the bottom; ``[len(sel), nz, nx]`` bool.

    A rugose top (``salt_rug``, cells per column) lifts the cap's upper half by rug(x),
    fully at the top and fading to nothing at the centre's depth.
    """
    s = sel.size
    cx = plan["salt_cx"][sel, b, None, None]
    dz = z - plan["salt_cz"][sel, b, None, None]
    at = plan["salt_at"][sel, b, None, None]
    if "salt_rug" in plan:
        dz = dz + plan["salt_rug"][sel, b, None, :] * np.clip(-dz / at, 0, 1)
    u = (x - cx) / plan["salt_ax"][sel, b, None, None]
    w = dz / np.where(dz < 0, at, plan["salt_ab"][sel, b, None, None])
    rho = np.hypot(u, w)
    t = np.arctan2(w, u)
    ti = ((t + np.float32(np.pi)) * np.float32(N_THETA / (2 * np.pi))).astype(np.intp)
    np.minimum(ti, N_THETA - 1, out=ti)
    r = np.take_along_axis(plan["salt_r"][sel, b], ti.reshape(s, -1), axis=1).reshape(s, nz, nx)
    inside = rho <= r
    inside |= np.abs(x - plan["stem_x"][sel, b, :, None]) <= plan["stem_hw"][sel, b, :, None]
    return inside


def _paint_water(plan, vel, nz) -> np.ndarray:
    """Water on top of everything (salt tops are kept below the sea floor when planned)."""
    rows = plan["water_rows"]
    if rows.any():
        wet = np.arange(nz)[None, :, None] < rows[:, None, None]
        vel = np.where(wet, plan["water_v"][:, None, None], vel)
    return vel
