"""The networks' normalisation, free of torch: the velocity scale and the gather scale.

* velocity (:class:`VelocityScale`): OpenFWI's min-max to [-1, 1] with the physical bounds
  ``geology.vmin`` / ``geology.vmax`` (m/s). It is all that metrics, figures and the report need,
  so it stands apart from the gathers' constants.
* gathers: ``g = sign(x) * log1p(k * (t/T)**p * |x|)``, then min-max to [-1, 1] with the min and
  max of ``g`` over the **train split only**. ``(t/T)**p`` is a time-power gain (``t = (i + 1) dt``
  for time sample ``i``, ``T = nt dt`` the record length; ``p = normalize.gain_power``,
  ``k = normalize.gain_scale``). It makes up for geometric spreading: without it the direct wave
  is ~100x the reflections from the bottom of the model, which then barely move the network's
  input. ``p = 0, k = 1`` is OpenFWI's plain ``sign(x) * log1p(|x|)``.

:class:`Normalizer` holds both, with constants from ``stats.json`` (:mod:`fwi_attn.io.stats`).
Every function takes numpy arrays or torch tensors; torch is never imported here (a tensor can
only be passed by a caller that has imported it already).
"""
from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from fwi_attn.io.stats import StatsError


def is_tensor(x) -> bool:
    """Whether ``x`` is a torch tensor, without importing torch."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def log_transform(x):
    """``sign(x) * log1p(|x|)`` for numpy arrays or torch tensors (OpenFWI's ``LogTransform``, k=1)."""
    if is_tensor(x):
        return x.abs().log1p().copysign(x)
    x = np.asarray(x)
    return np.copysign(np.log1p(np.abs(x)), x)


def inverse_log_transform(y):
    """Inverse of :func:`log_transform`: ``sign(y) * expm1(|y|)``."""
    if is_tensor(y):
        return y.abs().expm1().copysign(y)
    y = np.asarray(y)
    return np.copysign(np.expm1(np.abs(y)), y)


def time_gain(nt: int, power: float, scale: float = 1.0) -> np.ndarray:
    """``scale * (t/T)**power`` per time sample, float32 ``[nt, 1]`` (broadcasts over receivers).

    ``t = (i + 1) dt`` for sample ``i`` and ``T = nt dt``, so the gain is dimensionless, reaches
    ``scale`` at the end of the record and is never zero (the transform stays invertible).
    """
    t = np.arange(1, nt + 1, dtype=np.float64) / nt
    return (scale * t**power).astype(np.float32)[:, None]


def gain_log_transform(x: np.ndarray, power: float, scale: float) -> np.ndarray:
    """``sign(x) * log1p(scale * (t/T)**power * |x|)`` as float32, time on axis -2.

    Args:
        x: gathers ``[..., nt, n_receivers]`` (any leading axes: shots, samples).
    """
    y = np.abs(x, dtype=np.float32)
    if power != 0 or scale != 1:
        y *= time_gain(y.shape[-2], power, scale)
    np.log1p(y, out=y)
    np.copysign(y, x, out=y)
    return y


@dataclass(frozen=True)
class VelocityScale:
    """OpenFWI's velocity scale: m/s min-max to [-1, 1] with the physical bounds ``vmin``/``vmax``.

    Attributes:
        vmin, vmax: m/s mapped to -1 and +1 (``geology.vmin``/``vmax``).
    """

    vmin: float
    vmax: float

    def __post_init__(self):
        if not self.vmax > self.vmin:
            raise StatsError(f"vmax ({self.vmax}) must exceed vmin ({self.vmin})")

    def velocity(self, v):
        """Velocity in m/s -> [-1, 1] (numpy or torch); vmin -> -1, vmax -> +1."""
        return (v - self.vmin) * (2.0 / (self.vmax - self.vmin)) - 1.0

    @staticmethod
    def unit_interval(y):
        """Normalised velocity [-1, 1] -> [0, 1] (numpy or torch): the scale of SSIM and PSNR.

        ``unit_interval(velocity(v))`` is ``(v - vmin) / (vmax - vmin)``, computed through the
        [-1, 1] value so that both scales of one model agree to the last bit.
        """
        return (y + 1.0) / 2.0

    def velocity_inverse(self, y, clip: bool = False):
        """[-1, 1] -> m/s (numpy or torch). ``clip`` first limits ``y`` to [-1, 1], i.e. the
        result to [vmin, vmax] (the UNet's head is linear and may overshoot slightly)."""
        if clip:
            y = y.clamp(-1.0, 1.0) if is_tensor(y) else np.clip(y, -1.0, 1.0)
        return (y + 1.0) * (0.5 * (self.vmax - self.vmin)) + self.vmin


@dataclass(frozen=True)
class Normalizer:
    """The network's normalisation, constants from a train split (see the module docstring).

    Attributes:
        gathers_min, gathers_max: min and max of :func:`gain_log_transform` of the train gathers.
        vmin, vmax: physical velocity bounds in m/s (``geology.vmin``/``vmax``).
        gain_power, gain_scale: the time gain ``gain_scale * (t/T)**gain_power`` (defaults: none,
            OpenFWI's transform).
    """

    gathers_min: float
    gathers_max: float
    vmin: float
    vmax: float
    gain_power: float = 0.0
    gain_scale: float = 1.0

    def __post_init__(self):
        if not self.gathers_max > self.gathers_min:
            raise StatsError(f"gathers max ({self.gathers_max}) must exceed min ({self.gathers_min}): "
                             f"are the train gathers all zero?")
        VelocityScale(self.vmin, self.vmax)  # checks the bounds

    @classmethod
    def from_stats(cls, stats: dict) -> Normalizer:
        g = stats["gathers"]
        return cls(float(g["min"]), float(g["max"]), float(stats["velocity"]["vmin"]),
                   float(stats["velocity"]["vmax"]), float(g.get("gain_power", 0.0)),
                   float(g.get("gain_scale", 1.0)))

    def to_dict(self) -> dict:
        """Plain floats, as stored in checkpoints; :meth:`from_dict` reads them back."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping) -> Normalizer:
        """From :meth:`to_dict` output (an older dict without the gain keys means no gain)."""
        return cls(**{f.name: float(d[f.name]) for f in dataclasses.fields(cls) if f.name in d})

    @property
    def velocity_scale(self) -> VelocityScale:
        """The velocity half of the normalisation."""
        return VelocityScale(self.vmin, self.vmax)

    def gathers(self, x: np.ndarray) -> np.ndarray:
        """Raw gathers ``[..., nt, n_receivers]`` -> float32 in [-1, 1] for train-split values.

        Works in place on a float32 copy: this runs once per sample in the loader.
        """
        y = gain_log_transform(x, self.gain_power, self.gain_scale)
        scale = 2.0 / (self.gathers_max - self.gathers_min)
        y *= np.float32(scale)
        y -= np.float32(self.gathers_min * scale + 1.0)
        return y

    def gathers_inverse(self, y):
        """Normalised gathers -> raw amplitudes (numpy or torch)."""
        g = (y + 1.0) * (0.5 * (self.gathers_max - self.gathers_min)) + self.gathers_min
        x = inverse_log_transform(g)
        gain = time_gain(x.shape[-2], self.gain_power, self.gain_scale)
        return x / (sys.modules["torch"].from_numpy(gain).to(x) if is_tensor(x) else gain)

    @classmethod
    def for_velocity(cls, vmin: float, vmax: float) -> VelocityScale:
        """The velocity scale alone (metrics, figures) with bounds ``vmin``/``vmax`` in m/s: a
        :class:`VelocityScale`, which has every velocity method of a normaliser."""
        return VelocityScale(float(vmin), float(vmax))

    def velocity(self, v):
        """Velocity in m/s -> [-1, 1] (numpy or torch); vmin -> -1, vmax -> +1."""
        return self.velocity_scale.velocity(v)

    unit_interval = staticmethod(VelocityScale.unit_interval)

    def velocity_inverse(self, y, clip: bool = False):
        """[-1, 1] -> m/s (numpy or torch), optionally clipped to [vmin, vmax]
        (:meth:`VelocityScale.velocity_inverse`)."""
        return self.velocity_scale.velocity_inverse(y, clip)
