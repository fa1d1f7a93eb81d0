"""Users' velocity-model files: read them (``.npy``, ``.h5``/``.hdf5``, ``.sgy``/``.segy``,
``.mat``), resample them to a study's grid, and write a model as SEG-Y.

Velocities are P-wave velocities in m/s; models are ``[nz, nx]`` arrays, depth first (row 0 is
the surface), on square cells.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = ["MAX_ASPECT_CHANGE", "load_velocities", "read_velocity_file", "resample", "save_segy"]


#: Largest factor by which resampling may change a model's aspect ratio nz/nx (either way);
#: beyond it, bilinear resampling visibly stretches the geology (a 2:1 salt dome becomes 4:1).
MAX_ASPECT_CHANGE = 2.0


def read_velocity_file(path, variable: str | None = None) -> np.ndarray:
    """Read every velocity model (m/s) of a user's file as stored, without resampling.

    Formats, chosen by extension:

    * ``.npy``: a 2-D array ``[nz, nx]`` (one model), a stack ``[n, nz, nx]`` or OpenFWI's
      ``[n, 1, nz, nx]``.
    * ``.h5`` / ``.hdf5``: the dataset ``variable`` if given, else ``velocity`` (2-D: one model,
      3-D: a stack, e.g. an fwi-attn shard), otherwise the file's only 2-D dataset.
    * ``.sgy`` / ``.segy``: one 2-D model read with segyio; traces are x columns, samples depth.
    * ``.mat``: MATLAB v5 (scipy.io) or v7.3 (HDF5, read with h5py and transposed back to
      MATLAB's axis order): the variable ``variable`` if given, else ``velocity``, otherwise
      the file's only numeric array. Axes are taken as MATLAB shows them: ``nz x nx`` or
      ``n x nz x nx`` (permute a stack stored ``nz x nx x n`` first).

    Returns:
        An array ``[n, mz, mx]`` of the file's dtype (``n = 1`` for a 2-D model), in the file's order.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unknown extension, unreadable file, no such dataset/variable, a shape that is
            not a model or stack, no models, non-numeric or NaN/inf values; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"velocity model file {path} does not exist")

    ext = path.suffix.lower()
    if ext == ".npy":
        try:
            models = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise ValueError(f"cannot read velocity model {path} as .npy: {err}") from err
    elif ext in (".h5", ".hdf5"):
        models = _read_hdf5(path, variable)
    elif ext in (".sgy", ".segy"):
        models = _read_segy(path)
    elif ext == ".mat":
        models = _read_mat(path, variable)
    else:
        raise ValueError(
            f"velocity model {path}: unknown extension {path.suffix!r}; "
            "use .npy, .h5/.hdf5, .sgy/.segy or .mat"
        )

    models = np.asarray(models)
    if models.ndim == 2:
        models = models[None]
    elif models.ndim == 4 and models.shape[1] == 1:  # OpenFWI's [n, 1, nz, nx]
        models = models[:, 0]
    if models.ndim != 3:
        raise ValueError(
            f"velocity model {path} is not 2-D [nz, nx] nor a stack [n, nz, nx] or [n, 1, nz, nx]: "
            f"shape {models.shape}"
        )
    if models.size == 0:
        raise ValueError(f"velocity model {path} is empty: shape {models.shape}; it holds no model")
    if not np.issubdtype(models.dtype, np.number) or np.iscomplexobj(models):
        raise ValueError(f"velocity model {path} holds {models.dtype} values, not real numbers")
    n = len(models)
    for i in range(n):  # one model at a time: a big stack is never copied to float64 whole
        if not np.isfinite(models[i]).all():
            where = f" (model {i} of {n})" if n > 1 else ""  # so that the user can find it in a stack
            raise ValueError(f"velocity model {path} contains NaN or inf values{where}")
    return models


def load_velocities(path, nz: int, nx: int) -> np.ndarray:
    """Import every velocity model (m/s) of a user's file, resampled to the grid ``(nz, nx)``.

    Formats: those of :func:`read_velocity_file` (``.npy``, ``.h5``/``.hdf5``, ``.sgy``/``.segy``,
    ``.mat``).

    Resampling: each model is resampled with bilinear interpolation on corner-aligned grids
    (first and last samples map to first and last cells), so its physical extent is kept and
    only the spacing changes; a model already of shape ``(nz, nx)`` is returned exactly. The
    model's cells are taken as square, so resampling changes its aspect ratio nz/nx to the
    grid's; that is refused when the change exceeds :data:`MAX_ASPECT_CHANGE` (2x) either way,
    since it would stretch the geology, and so is an axis of fewer than 2 samples (a
    ``(1, 5000)`` array holds no depth to resample). Crop or pad such a model to the grid's
    aspect ratio first, or change ``survey.nz`` / ``survey.nx``.

    Args:
        path: the model file.
        nz, nx: the grid in cells (depth, offset), at least 2 each.

    Returns:
        float32 array ``[n, nz, nx]`` in m/s, in the file's order (``n = 1`` for a 2-D model);
        a caller that wants one model picks it, e.g. ``load_velocities(path, nz, nx)[0]``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: as :func:`read_velocity_file`, and an axis of fewer than 2 samples, an aspect
            ratio that resampling would change more than 2x, or non-positive velocities; the
            message names the file.
    """
    path = Path(path)
    nz, nx = int(nz), int(nx)
    if nz < 2 or nx < 2:
        raise ValueError(f"target grid must be at least 2 x 2 cells, got nz={nz}, nx={nx}")
    models = read_velocity_file(path)
    n, mz, mx = models.shape
    if mz < 2 or mx < 2:
        raise ValueError(
            f"velocity model {path} has models of {mz} x {mx} samples (nz x nx); each axis needs at "
            f"least 2 samples to be resampled to the {nz} x {nx} grid"
        )
    change = (mz / mx) / (nz / nx)
    if (mz, mx) != (nz, nx) and not 1 / MAX_ASPECT_CHANGE <= change <= MAX_ASPECT_CHANGE:
        raise ValueError(
            f"velocity model {path} of {mz} x {mx} samples (aspect nz/nx {mz / mx:.3g}) would be stretched "
            f"{max(change, 1 / change):.3g}x to fit the {nz} x {nx} grid (aspect {nz / nx:.3g}; at most "
            f"{MAX_ASPECT_CHANGE:g}x allowed); crop or pad it to the grid's aspect ratio, or change "
            f"survey.nz / survey.nx"
        )
    out = np.empty((n, nz, nx), dtype=np.float32)
    for i in range(n):
        model = models[i].astype(np.float64)
        if (model <= 0).any():
            where = f" (model {i} of {n})" if n > 1 else ""
            raise ValueError(
                f"velocity model {path} has non-positive velocities (min {model.min():g} m/s){where}"
            )
        out[i] = resample(model, nz, nx)
    return out


def save_segy(path, velocity: np.ndarray, dx: float) -> None:
    """Write a ``[nz, nx]`` velocity model (m/s) as a depth-domain SEG-Y file.

    One trace per x column, samples down in depth, IEEE float32 (format 5), so
    :func:`load_velocities` reads it back exactly. The sample interval fields hold the
    depth step in millimetres (the usual depth-section convention) when it fits the
    16-bit field, else in metres; CDP_X / source / group X hold the column's offset in
    metres with a coordinate scalar of -100 (centimetre precision).
    """
    import segyio

    velocity = np.asarray(velocity, dtype=np.float32)
    if velocity.ndim != 2:
        raise ValueError(f"save_segy({path}): velocity must be 2-D [nz, nx], got shape {velocity.shape}")
    if not (np.isfinite(dx) and dx > 0):
        raise ValueError(f"save_segy({path}): dx must be a positive number of metres, got {dx!r}")
    nz, nx = velocity.shape
    interval = int(round(dx * 1000)) if dx * 1000 < 32768 else int(round(dx))

    spec = segyio.spec()
    spec.format = 5
    spec.samples = np.arange(nz)
    spec.tracecount = nx
    text = segyio.tools.create_text_header(
        {
            1: "fwi-attn velocity model (P-wave velocity, m/s)",
            2: f"depth samples: nz={nz}, dz={dx:g} m; traces: nx={nx}, dx={dx:g} m",
            3: "sample interval in mm (m if dz >= 32.768 m); X in cm (scalar -100)",
        }
    )
    with segyio.create(str(path), spec) as f:
        f.text[0] = text
        f.bin.update(hdt=interval, dto=interval, hns=nz, nso=nz, format=5)
        for j in range(nx):
            x_cm = int(round(j * dx * 100))
            f.header[j] = {
                segyio.TraceField.TRACE_SEQUENCE_LINE: j + 1,
                segyio.TraceField.TRACE_SEQUENCE_FILE: j + 1,
                segyio.TraceField.CDP: j + 1,
                segyio.TraceField.SourceGroupScalar: -100,
                segyio.TraceField.SourceX: x_cm,
                segyio.TraceField.GroupX: x_cm,
                segyio.TraceField.CDP_X: x_cm,
                segyio.TraceField.TRACE_SAMPLE_COUNT: nz,
                segyio.TraceField.TRACE_SAMPLE_INTERVAL: interval,
            }
            f.trace[j] = np.ascontiguousarray(velocity[:, j])


def _read_hdf5(path: Path, variable: str | None = None) -> np.ndarray:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if variable is not None:
                if not isinstance(f.get(variable), h5py.Dataset):
                    names: list[str] = []
                    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
                    raise ValueError(f"velocity model {path} has no dataset {variable!r} "
                                     f"(datasets: {', '.join(names) or 'none'})")
                return f[variable][()]
            if "velocity" in f and isinstance(f["velocity"], h5py.Dataset):
                return f["velocity"][()]
            found: list[str] = []
            f.visititems(
                lambda name, obj: found.append(name)
                if isinstance(obj, h5py.Dataset) and obj.ndim == 2
                else None
            )
            if len(found) == 1:
                return f[found[0]][()]
            names = []
            f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    except OSError as err:
        raise ValueError(f"cannot read velocity model {path} as HDF5: {err}") from err
    what = "several 2-D datasets " + ", ".join(found) if found else "no 2-D dataset"
    raise ValueError(
        f"velocity model {path} has no dataset named 'velocity' and {what} "
        f"(datasets: {', '.join(names) or 'none'}); name one with its option"
    )


def _read_mat(path: Path, variable: str | None = None) -> np.ndarray:
    import scipy.io

    try:
        variables = scipy.io.loadmat(path)
    except NotImplementedError:
        # MATLAB v7.3 files are HDF5; h5py shows MATLAB's column-major arrays with axes reversed.
        return np.transpose(_read_hdf5(path, variable))
    except (OSError, ValueError, TypeError) as err:
        raise ValueError(f"cannot read velocity model {path} as a MATLAB .mat file: {err}") from err
    arrays = {k: v for k, v in variables.items() if not k.startswith("__") and isinstance(v, np.ndarray)}
    if variable is not None:
        if variable not in arrays:
            raise ValueError(f"velocity model {path} has no variable {variable!r} "
                             f"(variables: {', '.join(arrays) or 'none'})")
        return arrays[variable]
    if "velocity" in arrays:
        return arrays["velocity"]
    numeric = [k for k, v in arrays.items() if np.issubdtype(v.dtype, np.number) and v.ndim in (2, 3)]
    if len(numeric) == 1:
        return arrays[numeric[0]]
    raise ValueError(f"velocity model {path} has no variable named 'velocity' and "
                     f"{len(numeric)} numeric 2-D/3-D variables ({', '.join(numeric) or 'none'}); "
                     f"name one with its option")


def _read_segy(path: Path) -> np.ndarray:
    import segyio

    try:
        with segyio.open(str(path), "r", ignore_geometry=True) as f:
            traces = segyio.tools.collect(f.trace[:])  # [trace, sample]
    except (RuntimeError, OSError, ValueError) as err:
        raise ValueError(f"cannot read velocity model {path} as SEG-Y: {err}") from err
    return np.asarray(traces).T  # samples are depth: [nz, nx]


def resample(model: np.ndarray, nz: int, nx: int) -> np.ndarray:
    """Bilinear, corner-aligned resampling of one model ``[mz, mx]`` to ``[nz, nx]``: the first
    and last samples map to the first and last cells, so the physical extent is kept.
    A model already ``[nz, nx]`` comes back as given."""
    if model.shape == (nz, nx):
        return model
    zi = np.linspace(0.0, model.shape[0] - 1, nz)
    xi = np.linspace(0.0, model.shape[1] - 1, nx)
    coords = np.meshgrid(zi, xi, indexing="ij")
    return ndimage.map_coordinates(model, coords, order=1, mode="nearest")
