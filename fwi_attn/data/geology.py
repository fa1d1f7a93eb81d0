"""Velocity-model families for salt-body FWI (users' model files: :mod:`fwi_attn.data.velocity_files`).

Every generator returns P-wave velocity in m/s as a float32 array ``[n, nz, nx]``
(depth first: row 0 is the surface), on a square grid of spacing ``dx`` metres.

Families
--------
``salt``
    A window of a salt province (docs/geology.md): sediments whose velocity follows a
    compaction trend of burial depth below the sea floor (from a mudline velocity towards a
    deep limit), with per-layer steps, folds, a smooth lateral variation and up to a few
    faults; an optional water layer; and, unless the window is salt-free, salt bodies of four
    kinds at configured rates: diapirs/walls (a cap on a steep stem rooted below the section),
    mushrooms (a wide head on a narrow neck that widens to a pedestal, so the head overhangs
    sediments), sheets/canopies (wide, flat-based, on sediments, some on a feeder stem) and
    large bodies whose base lies below the section. Tops are rugose; strata are dragged up
    along rooted salt, thinned over its crest and truncated against it.
``salt_blobs``
    The earlier, simpler salt family: sediment velocities rising between two drawn values,
    one optional fault, and bodies with irregular outlines: sheets, enclosed blobs, domes and
    diapirs. Kept for family-transfer studies (train on one family, test on another).
``flatvel``, ``curvevel``, ``flatfault``, ``curvefault``
    OpenFWI-like families after Deng et al. (2022), "OpenFWI: Large-scale multi-structural
    benchmark datasets for full waveform inversion", arXiv:2111.02926: 2-5 layers with
    velocities in [vmin, vmax] increasing with depth, interfaces flat or curved by
    sine-like undulations, and for the *fault families 1-2 faults that displace the
    layers. Designed for 70 x 70 cells at 10 m, but every size scales with the grid.

How a model is built
--------------------
All random draws happen first, from the caller's generator only, into a *plan*: a dict
of per-model parameter arrays whose shapes depend on ``n`` and the grid alone. The plan
is then rendered block by block with pure numpy. Hence the same generator state gives
byte-identical models, whatever the block size, and memory stays bounded for big grids.

Grid convention: cell ``(i, j)`` sits at depth ``i * dx`` and offset ``j * dx`` metres.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fwi_attn.config import Section, range_keys, validate_section
from fwi_attn.config.record import FAMILIES, INTERFACE_JITTER, OPENFWI

# Users' model files have their own module; these names stay importable from here for callers
# written before the split.
from fwi_attn.data.velocity_plan import N_THETA, empty_plan, render

__all__ = ["FAMILIES", "KIND_CODES", "generate_velocity", "plan_velocity"]

# Models are rendered in blocks of about this many cells, which bounds the float32
# temporaries to a few MB each (1000 models of 201 x 301 would otherwise need GBs).
_BLOCK_CELLS = 1 << 20

# Fourier harmonics 2.._N_HARM of a salt outline; amplitudes fall as 1/h, so the low
# ones give lobes and the high ones a rugose top.
_N_HARM = 16

# salt_blobs body kinds and how often each is drawn. Sheets and blobs are enclosed (sediments
# below them: the sub-salt imaging problem); domes and diapirs are rooted at the bottom.
_SHEET, _BLOB, _DOME, _DIAPIR = 0, 1, 2, 3
_KIND_PROB = (0.3, 0.2, 0.25, 0.25)

# salt family body kinds, in the order of the schema's geology.salt.kinds (docs/geology.md).
_KINDS = ("diapir", "mushroom", "sheet", "massif")
KIND_CODES = {name: code for code, name in enumerate(_KINDS)}
_P_DIAPIR, _P_MUSHROOM, _P_SHEET, _P_MASSIF = range(4)



# ----------------------------------------------------------------------------- public API


def generate_velocity(
    family: str,
    n: int,
    rng: np.random.Generator,
    nz: int,
    nx: int,
    dx: float,
    params: dict,
) -> np.ndarray:
    """Draw ``n`` random velocity models of one family.

    Args:
        family: one of :data:`FAMILIES`.
        n: number of models (0 gives an empty array).
        rng: the only source of randomness; the same state gives byte-identical output.
        nz, nx: grid size in cells (depth, offset).
        dx: grid spacing in metres (converts the water depth and fault throw of
            ``params`` from metres to cells).
        params: the config's ``geology`` section: ``cfg.geology`` of a loaded config (used as
            validated), or a plain dict, which is validated and default-filled against the
            schema's ``geology`` section here (a missing key takes its default). Keys ``vmin``,
            ``vmax`` (m/s), ``water``, ``layers``, ``faults``, ``salt`` (see the schema and
            docs/geology.md, which say which keys shape which salt family). ``layers``,
            ``faults`` and ``salt`` shape the two salt families; ``vmin``, ``vmax`` and
            ``water`` apply to every family (OpenFWI layers then start at the sea floor).

    salt_blobs bodies: ``salt.top`` is the depth of a body's highest point and
    ``salt.width`` / ``salt.height`` its extent (fractions of nx / nz). Sheets take the
    wider and thinner of two draws, domes and diapirs the narrower; for those two, which
    are rooted, ``height`` is the cap's and a stem continues to the model bottom.
    ``salt.roughness`` in [0, 1] scales the outline's Fourier harmonics (0: smooth
    ellipse-like caps and smooth stems). The ``salt`` family's bodies are described in
    :func:`_plan_province_bodies` and docs/geology.md.

    Returns:
        float32 array ``[n, nz, nx]`` of velocity in m/s, clipped to ``[vmin, vmax]``.

    Raises:
        ValueError: unknown family or bad sizes; :class:`fwi_attn.config.ConfigError` (a
            ValueError) for bad ``params``, naming the key as ``load_config`` would.
    """
    n, nz, nx, p = _checked(family, n, nz, nx, dx, params)
    plan = _plan(family, rng, n, nz, nx, float(dx), p)

    out = np.empty((n, nz, nx), dtype=np.float32)
    step = max(1, _BLOCK_CELLS // (nz * nx))
    for start in range(0, n, step):
        block = {k: v[start : start + step] for k, v in plan.items()}
        out[start : start + step] = render(block, nz, nx)
    np.clip(out, p["vmin"], p["vmax"], out=out)
    return out


def plan_velocity(family: str, n: int, rng: np.random.Generator, nz: int, nx: int, dx: float,
                  params) -> dict[str, np.ndarray]:
    """The random draws of :func:`generate_velocity` (same arguments), before rendering.

    A dict of per-model arrays (first axis ``n``), e.g. ``salt_on`` ``[n, bodies]`` (body drawn)
    and ``salt_kind`` ``[n, bodies]`` (the ``salt`` family's :data:`KIND_CODES`): what tests and
    statistics need to know about a draw without inferring it from the velocities. The same
    generator state gives the plan that :func:`generate_velocity` renders.
    """
    n, nz, nx, p = _checked(family, n, nz, nx, dx, params)
    return _plan(family, rng, n, nz, nx, float(dx), p)


def _checked(family, n, nz, nx, dx, params) -> tuple[int, int, int, dict[str, Any]]:
    if family not in FAMILIES:
        raise ValueError(f"unknown velocity family {family!r}; choose one of {', '.join(FAMILIES)}")
    n, nz, nx = int(n), int(nz), int(nx)
    if n < 0 or nz < 2 or nx < 2:
        raise ValueError(f"need n >= 0 and a grid of at least 2 x 2 cells, got n={n}, nz={nz}, nx={nx}")
    if not (np.isfinite(dx) and dx > 0):
        raise ValueError(f"grid spacing dx must be a positive number of metres, got {dx!r}")
    return n, nz, nx, _plan_params(params)


def _plan(family, rng, n, nz, nx, dx, p) -> dict[str, np.ndarray]:
    if family == "salt":
        return _plan_salt(rng, n, nz, nx, dx, p)
    if family == "salt_blobs":
        return _plan_salt_blobs(rng, n, nz, nx, dx, p)
    return _plan_openfwi(rng, n, nz, nx, dx, p, family)


# ---------------------------------------------------------------------------- parameters


def _plan_params(params) -> dict[str, Any]:
    """The ``geology`` section as the planners' flat dict of plain floats and int pairs.

    Ranges, types and orderings are the schema's and :mod:`fwi_attn.config`'s, not repeated
    here: a config Section has been validated by ``load_config`` already; a plain dict (direct
    Python use) is validated and default-filled against the schema's ``geology`` section, so an
    error names the key as ``load_config`` would (``geology.salt.roughness``).
    """
    if isinstance(params, Section) and params._path == "geology.":  # cfg.geology of a loaded config
        g = params.to_dict()
    else:
        g = validate_section("geology", params, source="generate_velocity params")

    # Every [low, high] range the schema marks becomes a pair of floats or of ints.
    for key, kind in range_keys("geology").items():
        group, name = key.split(".")
        g[group][name] = tuple((int if kind == "count" else float)(v) for v in g[group][name])

    water, layers, faults, salt = g["water"], g["layers"], g["faults"], g["salt"]
    return {
        "vmin": float(g["vmin"]),
        "vmax": float(g["vmax"]),
        "water_probability": float(water["probability"]),
        "water_depth": water["depth"],
        "water_velocity": float(water["velocity"]),
        "layer_count": layers["count"],
        "v_top": layers["v_top"],
        "v_bottom": layers["v_bottom"],
        "curvature": layers["curvature"],
        "jitter": float(layers["jitter"]),
        "fault_probability": float(faults["probability"]),
        "max_throw": float(faults["max_throw"]),
        "salt_bodies": salt["bodies"],
        "salt_velocity": salt["velocity"],
        "salt_width": salt["width"],
        "salt_height": salt["height"],
        "salt_top": salt["top"],
        "roughness": float(salt["roughness"]),
        # salt family only (docs/geology.md)
        "v_seabed": layers["v_seabed"],
        "v_deep": layers["v_deep"],
        "compaction": layers["compaction"],
        "burial": layers["burial"],
        "lateral": layers["lateral"],
        "fault_count": faults["count"],
        "salt_none": float(salt["none_probability"]),
        "salt_kinds": tuple(float(salt["kinds"][k]) / sum(salt["kinds"].values()) for k in _KINDS),
        "sheet_width": salt["sheet_width"],
        "sheet_thickness": salt["sheet_thickness"],
        "feeder_probability": float(salt["feeder_probability"]),
        "massif_width": salt["massif_width"],
        "rugosity": salt["rugosity"],
        "rugosity_wavelength": salt["rugosity_wavelength"],
        "drag": salt["drag"],
        "drag_width": salt["drag_width"],
    }


# ------------------------------------------------------------------------------- planning


def _uniform(rng: np.random.Generator, bounds, size) -> np.ndarray:
    return rng.uniform(float(bounds[0]), float(bounds[1]), size)


def _integers(rng: np.random.Generator, bounds, size) -> np.ndarray:
    return rng.integers(int(bounds[0]), int(bounds[1]) + 1, size)


def _plan_water(rng, plan: dict, n: int, nz: int, dx: float, p: dict) -> np.ndarray:
    """Draw the water layer; returns the first sediment row (cells) per model."""
    has = rng.random(n) < p["water_probability"]
    depth_m = _uniform(rng, p["water_depth"], n)
    # rows whose depth i*dx lies above the sea floor: i < depth/dx; keep >= 2 rows of rock
    rows = np.minimum(np.ceil(depth_m / dx - 1e-9), nz - 2).astype(np.int64)
    plan["water_rows"][:] = np.where(has, rows, 0)
    plan["water_v"][:] = p["water_velocity"]
    return plan["water_rows"].astype(np.float64)


def _plan_interfaces(rng, plan: dict, counts: np.ndarray, z0: np.ndarray, nz: int) -> None:
    """Interface mean depths: evenly spread between ``z0`` and the bottom, +-30 % jitter.

    Stratifying (rather than sorting free draws) avoids sliver layers thinner than a cell.
    """
    n, n_if = plan["iface_z"].shape
    if n_if == 0:
        return
    k = np.arange(1, n_if + 1)[None, :]
    frac = (k + rng.uniform(-INTERFACE_JITTER, INTERFACE_JITTER, (n, n_if))) / counts[:, None]
    z = z0[:, None] + (nz - z0[:, None]) * frac
    plan["iface_z"][:] = np.where(k < counts[:, None], z, np.inf)


def _plan_fold(rng, plan: dict, n: int, cycles: tuple[float, float], overtones: float) -> None:
    """Shared interface undulation: a main sine (``cycles`` across the model) plus two
    shorter ones with weights up to ``overtones`` and ``overtones / 2``."""
    plan["fold_c"][:] = _uniform(rng, cycles, (n, 3)) * np.array([1.0, 2.0, 3.0])
    plan["fold_phi"][:] = rng.uniform(0.0, 2 * np.pi, (n, 3))
    plan["fold_w"][:] = np.stack(
        [np.ones(n), rng.uniform(0.0, overtones, n), rng.uniform(0.0, overtones / 2, n)], axis=1
    )


def _plan_faults(rng, plan, active, nz, nx, throw_cells, dip_deg) -> None:
    """Fault traces through mid-depth points, dipping either way; inactive: zero throw.

    Faults of one model share their dip direction and nearly their dip, and sit in
    separate slices of the model, so they do not cross (crossing traces compose into
    hourglass-shaped blocks that look artificial).
    """
    n, f = plan["fault_x"].shape
    slot = (np.arange(f)[None, :] + rng.uniform(0.15, 0.85, (n, f))) / f
    plan["fault_x"][:] = (0.15 + 0.7 * slot) * nx
    dip = _uniform(rng, dip_deg, (n, 1)) + rng.uniform(-5.0, 5.0, (n, f))
    dip = np.deg2rad(np.clip(dip, *dip_deg))
    side = rng.choice(np.array([-1.0, 1.0]), (n, 1))
    plan["fault_slope"][:] = side / np.tan(dip)
    plan["fault_throw"][:] = np.where(active, throw_cells, 0.0)


def _plan_salt_blobs(rng, n: int, nz: int, nx: int, dx: float, p: dict) -> dict:
    """salt_blobs family: water, sediment layers (velocity rising with depth), fault, salt."""
    k_max = p["layer_count"][1]
    b_max = p["salt_bodies"][1]
    plan = empty_plan(n, nz, k_max, 1, b_max)

    z0 = _plan_water(rng, plan, n, nz, dx, p)

    # Sediments: velocities rise from v_top to v_bottom at stratified fractions, then a
    # bounded jitter gives occasional mild inversions (and never crosses far into salt).
    counts = _integers(rng, p["layer_count"], n)
    v_top = _uniform(rng, p["v_top"], n)
    v_bot = _uniform(rng, p["v_bottom"], n)
    j = np.arange(k_max)[None, :]
    u = (j + rng.uniform(-0.35, 0.35, (n, k_max))) / np.maximum(counts - 1, 1)[:, None]
    u = np.clip(u, 0.0, 1.0)
    v = v_top[:, None] + (v_bot - v_top)[:, None] * u
    v = v + rng.uniform(-1.0, 1.0, (n, k_max)) * p["jitter"]
    plan["layer_v"][:] = v

    _plan_interfaces(rng, plan, counts, z0, nz)
    # curvature: fraction of nz; per-interface scale keeps folds near-parallel
    amp = _uniform(rng, p["curvature"], n) * nz
    plan["iface_amp"][:] = amp[:, None] * rng.uniform(0.6, 1.0, plan["iface_amp"].shape)
    _plan_fold(rng, plan, n, (0.25, 1.5), 0.5)

    # One optional fault (normal or reverse by the signs of throw and dip), with a throw
    # of at least 30 % of the maximum so that it shows.
    has_fault = rng.random((n, 1)) < p["fault_probability"]
    throw = (
        rng.uniform(0.3, 1.0, (n, 1))
        * rng.choice(np.array([-1.0, 1.0]), (n, 1))
        * (p["max_throw"] / dx)
    )
    _plan_faults(rng, plan, has_fault, nz, nx, throw, (45.0, 80.0))

    if b_max > 0:
        _plan_salt_bodies(rng, plan, n, nz, nx, z0, p)
    return plan


def _plan_salt_bodies(rng, plan, n, nz, nx, seabed, p) -> None:
    """Draw salt bodies: kind, box, outline harmonics, stem profile."""
    b = plan["salt_on"].shape[1]
    shape = (n, b)
    counts = _integers(rng, p["salt_bodies"], n)
    plan["salt_on"][:] = np.arange(b)[None, :] < counts[:, None]
    kind = rng.choice(4, size=shape, p=_KIND_PROB)
    plan["salt_v"][:] = _uniform(rng, p["salt_velocity"], shape)

    # Two draws each of width and height: sheets take the wider/thinner pair, domes and
    # diapirs the narrower one, so shapes differ while staying inside the given ranges.
    w2 = _uniform(rng, p["salt_width"], shape + (2,))
    h2 = _uniform(rng, p["salt_height"], shape + (2,))
    width = np.where(kind == _SHEET, w2.max(-1), np.where(kind == _BLOB, w2[..., 0], w2.min(-1)))
    height = np.where(kind == _SHEET, h2.min(-1), h2[..., 0])
    ax = np.maximum(width * nx / 2, 1.5)
    hh = np.maximum(height * nz, 2.0)
    # the body's top: at least two rows of sediment between the sea floor and the salt
    top = np.maximum(_uniform(rng, p["salt_top"], shape) * nz, seabed[:, None] + 2.0)
    up_frac = np.select(
        [kind == _SHEET, kind == _DIAPIR], [0.65, 0.6], default=0.5
    )  # sheets: flat base; diapirs: overhanging mushroom head
    at = np.maximum(hh * up_frac, 1.0)
    ab = np.maximum(hh * (1 - up_frac), 1.0)
    cx = rng.uniform(0.1, 0.9, shape) * nx

    r, cz = _plan_outline(rng, plan, shape, p["roughness"], top, at)
    plan["salt_cx"][:] = cx
    plan["salt_cz"][:] = cz
    plan["salt_ax"][:] = ax
    plan["salt_at"][:] = at
    plan["salt_ab"][:] = ab

    # Stems of domes (wide, flaring down) and diapirs (narrow, widening towards the
    # mother salt below); width and centre wander with depth, more so when rough.
    rooted = (kind == _DOME) | (kind == _DIAPIR)
    hw0 = ax * np.where(kind == _DOME, rng.uniform(0.75, 0.95, shape), rng.uniform(0.25, 0.5, shape))
    flare = np.where(kind == _DOME, rng.uniform(0.0, 0.8, shape), rng.uniform(0.0, 1.0, shape))
    tilt = rng.uniform(-0.25, 0.25, shape)
    zc = np.arange(nz, dtype=np.float64)
    width_wander, centre_wander = _wander(rng, shape, nz), _wander(rng, shape, nz)
    dz = zc - cz[..., None]
    hw = hw0[..., None] * (1 + flare[..., None] * dz / nz) * (1 + 0.6 * p["roughness"] * width_wander)
    hw = np.maximum(hw, 1.0)
    stem_on = rooted[..., None] & (dz >= 0)
    plan["stem_hw"][:] = np.where(stem_on, hw, -1.0)
    plan["stem_x"][:] = (
        cx[..., None] + tilt[..., None] * dz + p["roughness"] * hw0[..., None] * centre_wander
    )


def _plan_outline(rng, plan, shape, roughness, top, at) -> tuple[np.ndarray, np.ndarray]:
    """Star-shaped cap outlines r(theta) into ``plan["salt_r"]``; returns them and the centre depths.

    r(theta) = 1 + roughness * sum_h g_h / h cos(h theta + phi_h), h = 2..H, clipped to [0.35, 1.6];
    ``roughness`` a number or an array broadcasting against ``shape + (1,)``.
    """
    h = np.arange(2, _N_HARM + 1, dtype=np.float64)
    g = rng.normal(0.0, 0.9, shape + (h.size,)) / h
    phi = rng.uniform(0.0, 2 * np.pi, shape + (h.size,))
    theta = np.linspace(-np.pi, np.pi, N_THETA, endpoint=False) + np.pi / N_THETA
    # cos(h t + phi) = cos(h t) cos(phi) - sin(h t) sin(phi): two small matrix products
    # instead of evaluating n * bodies * harmonics * angles cosines
    ht = h[:, None] * theta[None, :]
    wobble = (g * np.cos(phi)) @ np.cos(ht) - (g * np.sin(phi)) @ np.sin(ht)
    r = np.clip(1.0 + roughness * wobble, 0.35, 1.6)
    plan["salt_r"][:] = r
    # Place the centre so that the outline's highest point (min of r sin(theta), scaled
    # by the upper semi-axis) lies exactly at the drawn top depth.
    cz = top - at * np.minimum((r * np.sin(theta)).min(axis=-1), 0.0)
    return r, cz


def _wander(rng, shape, nz) -> np.ndarray:
    """Smooth random function of depth in [-1, 1], shape ``shape + (nz,)``: 3 sines of 1-5 cycles."""
    zc = np.arange(nz, dtype=np.float64)
    s_w = np.array([1.0, 0.5, 0.25])
    c = rng.uniform(1.0, 5.0, shape + (3,))
    phase = rng.uniform(0.0, 2 * np.pi, shape + (3,))
    waves = np.sin(2 * np.pi * c[..., None] * zc / nz + phase[..., None])
    return np.einsum("k,nbkz->nbz", s_w, waves) / s_w.sum()


def _plan_salt(rng, n: int, nz: int, nx: int, dx: float, p: dict) -> dict:
    """Salt family: a window of a salt province (docs/geology.md).

    Sediments follow a compaction trend of burial depth plus per-layer jitter and a smooth
    lateral variation, are folded, cut by faults and dragged up along rooted salt; salt bodies
    are diapirs/walls, mushrooms, sheets/canopies and large bodies based below the section.
    """
    f32 = np.float32
    k_max, f_max, b_max = p["layer_count"][1], p["fault_count"][1], p["salt_bodies"][1]
    plan = empty_plan(n, nz, k_max, f_max, b_max)
    z0 = _plan_water(rng, plan, n, nz, dx, p)

    # Layers carry velocity steps about the trend (the reflectors), not absolute velocities.
    counts = _integers(rng, p["layer_count"], n)
    plan["layer_v"][:] = rng.uniform(-1.0, 1.0, (n, k_max)) * p["jitter"]
    _plan_interfaces(rng, plan, counts, z0, nz)
    amp = _uniform(rng, p["curvature"], n) * nz
    plan["iface_amp"][:] = amp[:, None] * rng.uniform(0.6, 1.0, plan["iface_amp"].shape)
    _plan_fold(rng, plan, n, (0.25, 1.5), 0.5)

    n_faults = _integers(rng, p["fault_count"], n)
    active = np.arange(f_max)[None, :] < n_faults[:, None]
    throw = (
        rng.uniform(0.3, 1.0, (n, f_max))
        * rng.choice(np.array([-1.0, 1.0]), (n, f_max))
        * (p["max_throw"] / dx)
    )
    _plan_faults(rng, plan, active, nz, nx, throw, (45.0, 80.0))

    # Compaction trend v(b) = v_deep - (v_deep - v_seabed) exp(-b / L), b the burial below the
    # sea floor in cells; a dry window starts at a drawn burial depth, a wet one at the sea surface.
    wet = plan["water_rows"] > 0
    plan["trend_v0"] = _uniform(rng, p["v_seabed"], n).astype(f32)
    plan["trend_vinf"] = _uniform(rng, p["v_deep"], n).astype(f32)
    plan["trend_len"] = (_uniform(rng, p["compaction"], n) / dx).astype(f32)
    plan["trend_b0"] = np.where(wet, 0.0, _uniform(rng, p["burial"], n) / dx).astype(f32)
    plan["seabed"] = z0.astype(f32)
    plan["sed_max"] = np.full(n, p["v_deep"][1], f32)
    plan["lat_amp"] = _uniform(rng, p["lateral"], n).astype(f32)
    plan["lat_c"] = rng.uniform(0.3, 1.5, n).astype(f32)
    plan["lat_phi"] = rng.uniform(0.0, 2 * np.pi, n).astype(f32)

    # Drag: z_eff = z + A * (salt mask blurred by sigma); the blur's depth derivative is at most
    # 1 / (sigma sqrt(2 pi)), so A <= 2 sigma keeps dz_eff/dz > 0 (strata bend, never overturn).
    sigma = _uniform(rng, p["drag_width"], n) * nx
    plan["drag_sigma"] = np.maximum(sigma, 0.5).astype(f32)
    plan["drag_amp"] = (_uniform(rng, p["drag"], n) * 2.0 * plan["drag_sigma"]).astype(f32)

    plan["salt_kind"] = np.full((n, b_max), -1, np.int8)
    plan["salt_drag"] = np.zeros((n, b_max), bool)
    plan["salt_rug"] = np.zeros((n, b_max, nx), f32)
    if b_max > 0:
        _plan_province_bodies(rng, plan, n, nz, nx, dx, z0, p)
    return plan


def _plan_province_bodies(rng, plan, n, nz, nx, dx, seabed, p) -> None:
    """Salt bodies of the salt family: kind, cap, rugose top, stem/pedestal, drag flag."""
    b = plan["salt_on"].shape[1]
    shape = (n, b)
    has_salt = rng.random(n) >= p["salt_none"]
    counts = _integers(rng, p["salt_bodies"], n) * has_salt
    on = np.arange(b)[None, :] < counts[:, None]
    plan["salt_on"][:] = on
    kind = rng.choice(len(_KINDS), size=shape, p=p["salt_kinds"])
    plan["salt_kind"][:] = np.where(on, kind, -1)
    plan["salt_v"][:] = _uniform(rng, p["salt_velocity"], shape)
    sheet, mushroom, massif = kind == _P_SHEET, kind == _P_MUSHROOM, kind == _P_MASSIF

    cap_w, cap_h = _uniform(rng, p["salt_width"], shape), _uniform(rng, p["salt_height"], shape)
    sheet_w, sheet_t = _uniform(rng, p["sheet_width"], shape), _uniform(rng, p["sheet_thickness"], shape)
    massif_w = _uniform(rng, p["massif_width"], shape)
    width = np.select([sheet, massif], [sheet_w, massif_w], default=cap_w)
    height = np.where(sheet, sheet_t, cap_h)
    ax = np.maximum(width * nx / 2, 1.5)
    hh = np.maximum(height * nz, 2.0)
    # sheets: flat base under a domed top; mushrooms: a head whose lobes droop below its centre
    up_frac = np.select([sheet, mushroom], [0.7, 0.4], default=0.5)
    at = np.maximum(hh * up_frac, 1.0)
    ab = np.maximum(hh * (1 - up_frac), 1.0)

    # Rugose top: relief rug(x) (cells) of 3 sines with wavelengths in rugosity_wavelength,
    # at most half the cap's upper semi-axis, so that the lift (faded over that semi-axis,
    # see _body_inside) keeps the top a single surface.
    rug_amp = np.minimum(_uniform(rng, p["rugosity"], shape) / dx, 0.5 * at)
    lam = _uniform(rng, p["rugosity_wavelength"], shape + (3,)) / dx
    phase = rng.uniform(0.0, 2 * np.pi, shape + (3,))
    xc = np.arange(nx, dtype=np.float64)
    waves = np.sin(2 * np.pi * xc / lam[..., None] + phase[..., None]).sum(axis=-2) / 3.0
    plan["salt_rug"][:] = rug_amp[..., None] * waves

    # salt.top is the highest bump's depth: the smooth cap's top lies rug_amp below it; at
    # least two rows of sediment between the sea floor and the salt
    top = np.maximum(_uniform(rng, p["salt_top"], shape) * nz, seabed[:, None] + 2.0) + rug_amp
    cx = rng.uniform(0.1, 0.9, shape) * nx
    # sheets are less lobate than diapir heads: half the outline roughness
    rough = p["roughness"] * np.where(sheet, 0.5, 1.0)[..., None]
    r, cz = _plan_outline(rng, plan, shape, rough, top, at)
    plan["salt_cx"][:] = cx
    plan["salt_cz"][:] = cz
    plan["salt_ax"][:] = ax
    plan["salt_at"][:] = at
    plan["salt_ab"][:] = ab

    # Stems, from the cap centre to the bottom edge: half-width hw0 at the cap, growing by
    # `flare` per model depth, plus for mushrooms a pedestal that widens the neck near the
    # bottom beyond the head (so the head overhangs sediments that lie on salt).
    feeder = sheet & (rng.random(shape) < p["feeder_probability"])
    rooted = ~sheet | feeder
    hw_frac = np.select(
        [kind == _P_DIAPIR, mushroom, sheet],
        [rng.uniform(0.55, 0.9, shape), rng.uniform(0.2, 0.4, shape), rng.uniform(0.08, 0.2, shape)],
        default=rng.uniform(0.85, 1.0, shape),
    )
    hw0 = np.maximum(ax * hw_frac, 1.0)
    flare = rng.uniform(0.0, 0.6, shape) * np.where(mushroom, 0.3, 1.0)
    pedestal = np.where(mushroom, ax * rng.uniform(1.0, 1.4, shape) - hw0, 0.0)
    tilt = rng.uniform(-0.2, 0.2, shape) * np.where(massif, 0.5, 1.0)
    width_wander, centre_wander = _wander(rng, shape, nz), _wander(rng, shape, nz)
    zc = np.arange(nz, dtype=np.float64)
    dz = zc - cz[..., None]
    below = np.clip(dz / np.maximum(nz - 1 - cz[..., None], 1.0), 0.0, 1.0)
    # flanks wander less than salt_blobs' stems: real flanks are irregular, not sinuous
    hw = (hw0[..., None] * (1 + flare[..., None] * dz / nz) + pedestal[..., None] * below**3) * (
        1 + 0.25 * p["roughness"] * width_wander
    )
    hw = np.maximum(hw, 1.0)
    stem_on = rooted[..., None] & (dz >= 0)
    plan["stem_hw"][:] = np.where(stem_on, hw, -1.0)
    plan["stem_x"][:] = (
        cx[..., None] + tilt[..., None] * dz + p["roughness"] * hw0[..., None] * centre_wander
    )
    # Sediments are dragged along bodies that rose through them, not under emplaced sheets.
    plan["salt_drag"][:] = on & ~sheet


def _plan_openfwi(rng, n: int, nz: int, nx: int, dx: float, p: dict, family: str) -> dict:
    """OpenFWI-like layered models (Deng et al. 2022), velocities in [vmin, vmax]."""
    lo, hi = OPENFWI["layers"]
    f_hi = OPENFWI["faults"][1]
    plan = empty_plan(n, nz, hi, f_hi, 0)
    z0 = _plan_water(rng, plan, n, nz, dx, p)

    counts = _integers(rng, (lo, hi), n)
    # Sorted uniform velocities, increasing with depth as in OpenFWI's "A" versions, kept
    # at least `gap` apart so that every interface is visible: sort draws on a range
    # shortened by (K - 1) gaps, then add j * gap to the j-th.
    j = np.arange(hi)[None, :]
    gap = OPENFWI["min_contrast"] * (p["vmax"] - p["vmin"])
    span = (p["vmax"] - p["vmin"]) - (counts[:, None] - 1) * gap
    v = np.where(j < counts[:, None], rng.uniform(0.0, 1.0, (n, hi)) * span, np.inf)
    v = p["vmin"] + np.sort(v, axis=1) + j * gap
    last = v[np.arange(n), counts - 1]
    plan["layer_v"][:] = np.where(np.isinf(v), last[:, None], v)
    _plan_interfaces(rng, plan, counts, z0, nz)

    if family.startswith("curve"):
        amp = _uniform(rng, OPENFWI["curve_amplitude"], n) * nz
        plan["iface_amp"][:] = amp[:, None] * rng.uniform(0.7, 1.0, plan["iface_amp"].shape)
        # OpenFWI's curves are smooth sines: keep overtones weak
        _plan_fold(rng, plan, n, (0.4, 1.6), 0.2)

    if family.endswith("fault"):
        nf = _integers(rng, OPENFWI["faults"], n)
        active = np.arange(f_hi)[None, :] < nf[:, None]
        throw = _uniform(rng, OPENFWI["throw"], (n, f_hi)) * nz
        throw *= rng.choice(np.array([-1.0, 1.0]), (n, f_hi))
        _plan_faults(rng, plan, active, nz, nx, throw, OPENFWI["dip"])
    return plan
