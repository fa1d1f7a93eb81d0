"""How long a record must be: the slowest velocity profile each family can draw, and the
time of the primary reflection from the model's bottom at the largest offset through it.

Free of numpy and of the generator (:mod:`fwi_attn.data.geology` imports the config, not the
other way round), so the family constants that bound a draw live here, where the config's
check and the generator both read them.
"""
from __future__ import annotations

import math

#: Velocity-model families (docs/geology.md), in the schema's order.
FAMILIES = ("salt", "flatvel", "curvevel", "flatfault", "curvefault", "salt_blobs")

#: OpenFWI-like layering (Deng et al. 2022), as fractions of the grid so that 70 x 70 matches
#: the paper's look.
OPENFWI = {
    "layers": (2, 5),  # number of layers, inclusive
    "min_contrast": 0.05,  # least velocity step between layers, fraction of vmax - vmin
    "curve_amplitude": (0.03, 0.12),  # sine undulation amplitude, fraction of nz
    "faults": (1, 2),  # number of faults in the *fault families, inclusive
    "throw": (0.06, 0.2),  # fault throw, fraction of nz (random sign)
    "dip": (45.0, 85.0),  # fault dip, degrees from horizontal
}

#: Interface jitter of the stratified layering: interface k of K sits at (k +- this) / K of
#: the sediment column.
INTERFACE_JITTER = 0.3

#: Depth samples per grid cell when integrating travel time through a profile.
_SUBSAMPLES = 4


def slowest_profile(family: str, geology: dict, depths: list[float]) -> list[float]:
    """The slowest velocity (m/s) at each depth (m below the surface) that ``family`` can draw.

    * ``salt``: the compaction trend ``v(b) = v_deep - (v_deep - v_seabed) exp(-b / L)`` with
      the lowest ``v_seabed`` and ``v_deep``, the longest ``L`` and the shallowest burial of the
      window's top; the per-layer steps (``layers.jitter``) and the lateral variation are
      zero-mean perturbations of the trend and are left out.
    * ``salt_blobs``: a linear rise from the lowest ``v_top`` to the lowest ``v_bottom``.
    * OpenFWI families: two layers, the top one at ``vmin`` down to the deepest its base can be
      drawn (stratified interface, plus undulation and fault throw), then ``vmin`` plus the
      least layer contrast.

    With ``water.probability > 0`` the deepest water layer is drawn too where that is slower.

    Args:
        family: one of :data:`FAMILIES`.
        geology: the resolved ``geology`` config section (a mapping).
        depths: depths in m, increasing, from 0 to the model's bottom.
    """
    bottom = depths[-1] if depths else 0.0
    water = geology["water"]
    water_depths = [0.0]
    if water["probability"] > 0 and water["depth"][1] > 0:
        water_depths.append(min(float(water["depth"][1]), bottom))
    best: list[float] | None = None
    for seabed in water_depths:
        sediment = _sediment_profile(family, geology, depths, seabed, bottom, wet=seabed > 0)
        profile = [float(water["velocity"]) if z < seabed else v for z, v in zip(depths, sediment)]
        if best is None or _slowness(profile) > _slowness(best):
            best = profile
    return best or []


def _slowness(profile: list[float]) -> float:
    return sum(1.0 / v for v in profile)


def _sediment_profile(family, g, depths, seabed, bottom, wet) -> list[float]:
    layers = g["layers"]
    if family == "salt":
        v0, vinf = float(layers["v_seabed"][0]), float(layers["v_deep"][0])
        length = float(layers["compaction"][1])
        b0 = 0.0 if wet else float(layers["burial"][0])
        return [vinf - (vinf - v0) * math.exp(-(max(z - seabed, 0.0) + b0) / length) for z in depths]
    if family == "salt_blobs":
        v_top, v_bottom = float(layers["v_top"][0]), float(layers["v_bottom"][0])
        span = max(bottom - seabed, 1e-9)
        return [v_top + (v_bottom - v_top) * min(max((z - seabed) / span, 0.0), 1.0) for z in depths]
    if family in FAMILIES:
        vmin, vmax = float(g["vmin"]), float(g["vmax"])
        lowest_layers = OPENFWI["layers"][0]
        base = seabed + (bottom - seabed) * (1 + INTERFACE_JITTER) / lowest_layers
        if family.startswith("curve"):
            base += OPENFWI["curve_amplitude"][1] * bottom
        if family.endswith("fault"):
            base += OPENFWI["throw"][1] * bottom
        second = vmin + OPENFWI["min_contrast"] * (vmax - vmin)
        return [vmin if z <= base else second for z in depths]
    raise ValueError(f"unknown velocity family {family!r}; choose one of {', '.join(FAMILIES)}")


def reflection_time(survey: dict, geology: dict, family: str) -> tuple[float, float, float]:
    """Arrival time in s of the primary reflection from the model's bottom at the survey's
    largest source-receiver offset, through ``family``'s slowest profile, wavelet peak included.

    Two-way vertical time ``t0 = 2 * integral dz / v(z)`` from the shallower of the source and
    receiver depths to the bottom row ``(nz - 1) * dx``, moved out to the offset ``x`` on the
    RMS-velocity hyperbola ``t = sqrt(t0^2 + x^2 / v_rms^2)``.

    Returns:
        ``(time, offset, v_rms)``: seconds, metres, m/s.
    """
    dx = float(survey["dx"])
    bottom = (survey["nz"] - 1) * dx
    top = min(survey["source_depth"], survey["receiver_depth"])
    n = max(int(round((bottom - top) / dx * _SUBSAMPLES)), 1)
    step = (bottom - top) / n
    depths = [top + (i + 0.5) * step for i in range(n)]
    profile = slowest_profile(family, geology, [0.0] + depths + [bottom])[1:-1]
    t0 = 2.0 * sum(step / v for v in profile)
    # v_rms^2 = sum(v^2 dt) / sum(dt), with dt = dz / v at each sample.
    v_rms = math.sqrt(sum(v * step for v in profile) / sum(step / v for v in profile)) if profile else 1.0
    src, rec = survey["source_x"], survey["receiver_x"]
    offset = max(abs(rec[1] - src[0]), abs(src[1] - rec[0]), abs(rec[0] - src[0]), abs(src[1] - rec[1]))
    return float(survey["peak_time"]) + math.sqrt(t0 ** 2 + (offset / v_rms) ** 2), offset, v_rms
