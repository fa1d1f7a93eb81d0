"""Acquisition geometry, source wavelet and numerical-stability checks.

Everything here is in physical units: positions in metres as ``(x, z)`` pairs, times
in seconds, velocities in m/s, frequencies in Hz. Conversion to grid cells happens in
:mod:`fwi_attn.data.simulate` only.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

# torch is imported where a wavelet is made: reading a results file's acquisition (the figures)
# must not pay for loading it.

#: The Ricker wavelet's "high-frequency end": at 2.5x the peak frequency its amplitude
#: spectrum is about 3% of the peak, so shorter wavelengths carry negligible energy.
RICKER_FMAX_FACTOR = 2.5


class SurveyError(ValueError):
    """The acquisition or discretisation would give wrong results."""


class SurveyWarning(UserWarning):
    """The discretisation is marginal: results are usable but less accurate."""


@dataclass(frozen=True)
class Survey:
    """A 2-D surface survey on a regular grid.

    Attributes:
        nz, nx: model size in cells (depth, lateral).
        dx: cell size in m (square cells).
        dt: recording sample interval in s.
        nt: number of recorded samples.
        freq: Ricker peak frequency in Hz.
        peak_time: time of the Ricker peak in s.
        source_xz: ``[shot, 2]`` source positions ``(x, z)`` in m, one source per shot.
        receiver_xz: ``[receiver, 2]`` receiver positions ``(x, z)`` in m, shared by all shots.
        free_surface: pressure-release top boundary instead of an absorbing one.
        accuracy: spatial finite-difference order (2, 4, 6 or 8).
        pml_width: absorbing-boundary width in cells.
        max_vel: the largest velocity any simulated model may hold (m/s); fixes the
            internal time step (CFL) and the PML so every model is simulated alike.
    """

    nz: int
    nx: int
    dx: float
    dt: float
    nt: int
    freq: float
    peak_time: float
    source_xz: np.ndarray = field(repr=False)
    receiver_xz: np.ndarray = field(repr=False)
    free_surface: bool = False
    accuracy: int = 4
    pml_width: int = 20
    max_vel: float = 4500.0

    @classmethod
    def from_config(cls, cfg) -> Survey:
        """Build the survey of a :class:`fwi_attn.config.Config` (``max_vel`` = ``geology.vmax``).

        ``peak_time`` is the config's resolved ``survey.peak_time`` (``load_config`` turns a
        null into 1.5 / freq), read, not recomputed, so the survey and the stored config agree.
        """
        s = cfg.survey
        if s.peak_time is None:
            raise SurveyError("survey.peak_time is null: build the Survey from the config that load_config "
                              "returns (it resolves the peak time), not from a raw dict")
        peak_time = s.peak_time
        src_x = np.linspace(s.source_x[0], s.source_x[1], s.n_shots)
        rec_x = np.linspace(s.receiver_x[0], s.receiver_x[1], s.n_receivers)
        return cls(
            nz=s.nz, nx=s.nx, dx=float(s.dx), dt=float(s.dt), nt=s.nt, freq=float(s.freq),
            peak_time=float(peak_time),
            source_xz=snap_to_grid(np.stack([src_x, np.full_like(src_x, s.source_depth)], 1), s.dx),
            receiver_xz=snap_to_grid(np.stack([rec_x, np.full_like(rec_x, s.receiver_depth)], 1), s.dx),
            free_surface=bool(s.free_surface), accuracy=int(s.accuracy), pml_width=int(s.pml_width),
            max_vel=float(cfg.geology.vmax),
        )

    @property
    def n_shots(self) -> int:
        return len(self.source_xz)

    @property
    def n_receivers(self) -> int:
        return len(self.receiver_xz)

    @property
    def fmax(self) -> float:
        """Highest frequency with significant energy in the wavelet, Hz."""
        return RICKER_FMAX_FACTOR * self.freq

    def wavelet(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The Ricker source wavelet, ``[nt]``, peak at ``peak_time`` (``dtype``: float32 by default)."""
        import deepwave  # here, not at the top: commands that only compare surveys skip its import (~3-6 s)
        import torch

        return deepwave.wavelets.ricker(self.freq, self.nt, self.dt, self.peak_time, dtype=dtype or torch.float32)

    def inner_steps(self, max_vel: float | None = None) -> int:
        """Internal time steps per recorded sample that deepwave needs for CFL stability."""
        import deepwave

        _, ratio = deepwave.discretisation.cfl_condition_n(self.dx, self.dt, max_vel or self.max_vel)
        return int(ratio)

    def check(self, vmin: float, vmax: float) -> list[str]:
        """Check stability and accuracy for models with velocities in ``[vmin, vmax]`` m/s.

        Raises :class:`SurveyError` where results would be wrong (velocities above
        ``max_vel``, an aliased record, fewer grid points per wavelength than the
        stencil can carry); warns (:class:`SurveyWarning`) and returns the messages
        where the discretisation is marginal.
        """
        errors, notes = [], []
        if vmax > self.max_vel * (1 + 1e-6):
            errors.append(
                f"velocity {vmax:g} m/s exceeds max_vel {self.max_vel:g} m/s that fixes the CFL time step: "
                f"the simulation would be unstable; raise geology.vmax to at least {vmax:g}")
        if vmin <= 0:
            errors.append(f"velocity {vmin:g} m/s is not positive")
        nyquist = 0.5 / self.dt
        if self.fmax > nyquist:
            errors.append(
                f"survey.dt = {self.dt:g} s aliases the wavelet: its energy reaches {self.fmax:g} Hz "
                f"({RICKER_FMAX_FACTOR}x survey.freq) but the Nyquist frequency is {nyquist:g} Hz; "
                f"use dt <= {0.5 / self.fmax:.2e} s")
        if vmin > 0:
            ppw = vmin / self.fmax / self.dx
            import deepwave

            need = deepwave.suggest_discretisation(
                vmin, self.fmax, 2, self.accuracy, min_points_per_wavelength=1.0).points_per_wavelength
            fix = (f"use survey.dx <= {vmin / self.fmax / need:.2f} m, a higher survey.accuracy, "
                   f"or a lower survey.freq")
            if ppw < 0.6 * need:
                errors.append(
                    f"grid dispersion: only {ppw:.2f} grid points per shortest wavelength "
                    f"({vmin:g} m/s at {self.fmax:g} Hz, dx = {self.dx:g} m); accuracy-{self.accuracy} "
                    f"stencils need {need:g} for 1% phase error; {fix}")
            elif ppw < need:
                notes.append(
                    f"marginal grid dispersion: {ppw:.2f} grid points per shortest wavelength, below the "
                    f"{need:g} that accuracy-{self.accuracy} stencils need for 1% phase error; {fix}")
        if self.peak_time < 1.0 / self.freq:
            notes.append(f"survey.peak_time = {self.peak_time:g} s is under one period (1/freq = "
                         f"{1 / self.freq:g} s): the wavelet starts truncated, adding a spurious high-frequency kick")
        if errors:
            raise SurveyError("; ".join(errors))
        for note in notes:
            warnings.warn(note, SurveyWarning, stacklevel=2)
        return notes


def snap_to_grid(xz: np.ndarray, dx: float) -> np.ndarray:
    """Round positions ``[n, 2]`` (m) to the nearest grid node, so stored positions are exact."""
    return (np.round(np.asarray(xz, dtype=np.float64) / dx) * dx).astype(np.float64)


def check_model_velocity(velocity: np.ndarray | torch.Tensor, survey: Survey, where: str = "model") -> None:
    """Refuse models that would break the simulation: NaN, non-positive, or above ``max_vel``.

    Args:
        velocity: ``[..., nz, nx]`` in m/s.
        where: a label for the error message (a file name or sample index).
    """
    v = velocity.detach().cpu().numpy() if hasattr(velocity, "detach") else np.asarray(velocity)
    if v.shape[-2:] != (survey.nz, survey.nx):
        raise SurveyError(f"{where}: velocity grid {v.shape[-2:]} does not match the survey's "
                          f"(nz, nx) = ({survey.nz}, {survey.nx})")
    if not np.isfinite(v).all():
        raise SurveyError(f"{where}: velocity contains NaN or infinite values")
    vmin, vmax = float(v.min()), float(v.max())
    if vmin <= 0:
        raise SurveyError(f"{where}: velocity must be positive, found {vmin:g} m/s")
    if vmax > survey.max_vel * (1 + 1e-6):
        idx = np.unravel_index(int(np.argmax(v)), v.shape)
        z, x = idx[-2] * survey.dx, idx[-1] * survey.dx
        raise SurveyError(
            f"{where}: velocity {vmax:g} m/s at (x={x:g} m, z={z:g} m) exceeds max_vel {survey.max_vel:g} m/s, "
            f"which fixes the CFL time step (simulation would be unstable); raise geology.vmax or clip the model")


def first_arrival_time(survey: Survey, velocity: float) -> np.ndarray:
    """Direct-wave travel time ``[shot, receiver]`` in s in a homogeneous medium (for checks)."""
    d = np.linalg.norm(survey.source_xz[:, None, :] - survey.receiver_xz[None, :, :], axis=-1)
    return d / velocity + survey.peak_time


# ----------------------------------------------------------------------------- comparing acquisitions


class GridError(ValueError):
    """A velocity model is on a grid other than the data's."""


class AcquisitionError(ValueError):
    """Two data sets, or a data set and its re-simulation, come from different acquisitions."""


def acquisition_differences(a: Survey, b: Survey) -> list[str]:
    """What differs between two surveys, in words (empty when they would simulate alike)."""
    out = []
    for name, unit in (("nz", ""), ("nx", ""), ("dx", " m"), ("dt", " s"), ("nt", ""), ("freq", " Hz"),
                       ("peak_time", " s"), ("free_surface", ""), ("accuracy", ""), ("pml_width", " cells"),
                       ("max_vel", " m/s")):
        va, vb = getattr(a, name), getattr(b, name)
        same = math.isclose(va, vb, rel_tol=1e-9, abs_tol=1e-12) if isinstance(va, float) else va == vb
        if not same:
            out.append(f"{name} {va:g}{unit} vs {vb:g}{unit}" if not isinstance(va, bool) else f"{name} {va} vs {vb}")
    for name in ("source_xz", "receiver_xz"):
        pa, pb = getattr(a, name), getattr(b, name)
        what = "sources" if name == "source_xz" else "receivers"
        if pa.shape != pb.shape:
            out.append(f"{len(pa)} vs {len(pb)} {what}")
        elif not np.allclose(pa, pb, rtol=0, atol=1e-6 * max(a.dx, 1.0)):
            k = int(np.argmax(np.abs(pa - pb).max(axis=1)))
            out.append(f"{what} positions differ (first at #{k}: (x, z) = ({pa[k, 0]:g}, {pa[k, 1]:g}) m "
                       f"vs ({pb[k, 0]:g}, {pb[k, 1]:g}) m)")
    return out


def check_acquisition(a: Survey, b: Survey, what_a: str, what_b: str) -> None:
    """Raise :class:`AcquisitionError` naming every difference between two surveys."""
    diffs = acquisition_differences(a, b)
    if diffs:
        raise AcquisitionError(f"{what_a} and {what_b} come from different acquisitions: " + "; ".join(diffs))


def check_grid(velocity: np.ndarray, survey: Survey, what: str) -> None:
    """Raise :class:`GridError` unless ``velocity [..., nz, nx]`` is on the survey's grid."""
    if tuple(velocity.shape[-2:]) != (survey.nz, survey.nx):
        raise GridError(f"{what} is on a {velocity.shape[-2]} x {velocity.shape[-1]} grid but the data were "
                        f"recorded over a {survey.nz} x {survey.nx} grid (nz x nx at dx = {survey.dx:g} m); "
                        f"resample it to the data's grid first (`fwi-attn predict` does so for a network)")
