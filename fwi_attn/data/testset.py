"""Test splits from any velocity models: ``fwi-attn testset``.

A folder (or list) of velocity-model files becomes a test split on a study's survey, so that
networks trained on the study's synthetic models can be scored on geology they never saw
(external validity). Steps, each one function here:

1. :func:`model_files`: the input files (``.npy``, ``.h5``/``.hdf5``, ``.sgy``/``.segy``,
   ``.mat``), read by :func:`fwi_attn.data.velocity_files.read_velocity_file`.
2. :func:`resample_models`: each file's models are brought to the study's cell size ``dx``,
   either by ``scipy.ndimage.zoom`` (linear) from their own cell size (``model_dx``), or, with
   ``fit``, squeezed whole onto the study's grid as ``fwi-attn simulate`` does.
3. :func:`window_origins`: windows of the study's ``nz x nx`` are cut from each resampled model,
   starting ``top`` cells below its first row, ``stride`` cells apart.
4. :func:`build_test_set`: windows with too little salt are dropped, windows with velocities
   outside ``geology.vmin .. vmax`` are rejected or clipped (counted and printed), at most
   ``max_windows`` are kept (a seeded draw), and every window is simulated with the study's
   survey (:func:`fwi_attn.data.simulate.simulate`) and written to shards
   (:func:`fwi_attn.io.shard.write_shard`, atomic), plus a ``testset.json`` summary.

Each shard records where every sample came from in its ``provenance`` attribute (JSON)::

    {"set": "bp", "files": [{"path": "/abs/models/bp.sgy", "sha256": "...", "shape": [1, 1911, 5395],
                             "resample": [0.625, 0.625], "variable": null}, ...],
     "file": [0, 0, ...], "model": [0, 0, ...], "iz": [0, 0, ...], "ix": [0, 32, ...],
     "clipped_cells": [0, 12, ...], "options": {...}}

``file[i]`` indexes the shard's ``files`` (those its samples come from) for sample ``i``; ``model[i]`` is the model within that file;
``iz[i], ix[i]`` the window's top-left cell in the resampled model (study cells of ``dx`` m);
``resample`` the zoom factors (depth, offset) applied to the file's models; ``clipped_cells``
how many cells were clipped into range. The shard's ``dataset`` attribute is the set's name
and its ``split`` is ``test``.

A set may also be drawn from one of the generator's families instead of files
(:func:`generated_models`, ``fwi-attn testset --family F --samples N``): the same windowing,
simulation and shards, with ``family`` = ``F`` and a ``files`` entry
``{"family": F, "samples": N, "seed": S}`` in place of a file's record. A study trained on one
family and tested on another measures transfer between them.
"""
from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from fwi_attn.config import load_schema

#: Extensions of the model files a folder is searched for.
MODEL_SUFFIXES = (".npy", ".h5", ".hdf5", ".sgy", ".segy", ".mat")
SUMMARY_NAME = "testset.json"
SUMMARY_SCHEMA = "fwi-attn-testset/1"


def _entry_schema() -> dict:
    """The schema of one ``study.test_sets`` entry's options (every key but ``name`` and ``path``)."""
    items = load_schema()["properties"]["study"]["properties"]["test_sets"]["items"]["properties"]
    return {k: v for k, v in items.items() if k not in ("name", "path")}


#: The options' schema: their one source of defaults, types and allowed values.
OPTION_SCHEMA = _entry_schema()
OUT_OF_RANGE = tuple(OPTION_SCHEMA["out_of_range"]["enum"])


class TestSetError(ValueError):
    """The inputs of a test set are unusable (no files, a bad option, nothing left to simulate)."""

    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class TestSetOptions:
    """How models become windows (every field is a ``fwi-attn testset`` option).

    Attributes:
        model_dx: the input models' cell size in m; they are zoomed by ``model_dx / dx`` to the
            study's ``dx``. None: they are taken to be on the study's ``dx`` already.
        fit: resample each whole model onto the study's ``nz x nx`` grid instead of cutting
            windows (bilinear, extent kept; refused when its aspect ratio would change > 2x).
        stride: ``(z, x)`` cells between window origins; None: the window size (no overlap).
            A ``z`` of 0 cuts one row of windows at ``top``.
        top: first row (study cells, after resampling) of the topmost windows, e.g. to skip a
            model's air or water rows so that the survey's sources sit at its surface.
        min_salt: least fraction of a window's cells above ``evaluate.salt_threshold``.
        max_windows: keep at most this many windows, drawn with ``seed`` (None: all).
        seed: seed of that draw.
        out_of_range: ``reject`` windows with a velocity outside ``geology.vmin .. vmax``, or
            ``clip`` them into that range.
        variable: the HDF5 dataset / MATLAB variable holding the models (default: ``velocity``,
            else the file's only one).
    """

    __test__ = False  # not a pytest test class

    # Defaults are the schema's (a study.test_sets entry and the command line agree).
    model_dx: float | None = OPTION_SCHEMA["model_dx"]["default"]
    fit: bool = OPTION_SCHEMA["fit"]["default"]
    stride: tuple[int, int] | None = OPTION_SCHEMA["stride"]["default"]
    top: int = OPTION_SCHEMA["top"]["default"]
    min_salt: float = OPTION_SCHEMA["min_salt"]["default"]
    max_windows: int | None = OPTION_SCHEMA["max_windows"]["default"]
    seed: int = OPTION_SCHEMA["seed"]["default"]
    out_of_range: str = OPTION_SCHEMA["out_of_range"]["default"]
    variable: str | None = OPTION_SCHEMA["variable"]["default"]

    @classmethod
    def from_entry(cls, entry) -> TestSetOptions:
        """The options of a ``study.test_sets`` entry (a mapping; its ``name`` and ``path`` ignored)."""
        values = {f.name: entry[f.name] for f in fields(cls) if f.name in entry}
        if values.get("stride") is not None:
            values["stride"] = tuple(values["stride"])
        return cls(**values)

    @classmethod
    def from_args(cls, args) -> TestSetOptions:
        """The options of parsed ``fwi-attn testset`` arguments (:func:`add_option_arguments`)."""
        values = {f.name: getattr(args, f.name) for f in fields(cls)}
        if values["stride"] is not None:
            values["stride"] = tuple(values["stride"])
        return cls(**values)

    def to_args(self) -> list[str]:
        """The ``fwi-attn testset`` arguments that give these options (defaults left out), e.g.
        ``["--top", "4", "--fit"]``; each an argv item, to be shell-quoted by a caller that
        builds a command line."""
        out: list[str] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value == f.default:
                continue
            flag = option_flag(f.name)
            if isinstance(value, bool):
                out.append(flag)
            elif isinstance(value, tuple):
                out += [flag, *map(str, value)]
            else:
                out += [flag, str(value)]
        return out

    def check(self) -> None:
        if self.model_dx is not None and not (np.isfinite(self.model_dx) and self.model_dx > 0):
            raise TestSetError(f"--model-dx must be a positive cell size in m, got {self.model_dx}")
        if self.stride is not None and (len(self.stride) != 2 or self.stride[0] < 0 or self.stride[1] < 1):
            raise TestSetError(f"--stride takes two cell counts Z X with Z >= 0 and X >= 1, got {self.stride}")
        if self.top < 0:
            raise TestSetError(f"--top must be 0 or more cells, got {self.top}")
        if not 0.0 <= self.min_salt <= 1.0:
            raise TestSetError(f"--min-salt is a fraction of the window's cells in [0, 1], got {self.min_salt}")
        if self.max_windows is not None and self.max_windows < 1:
            raise TestSetError(f"--max-windows must be at least 1, got {self.max_windows}")
        if self.out_of_range not in OUT_OF_RANGE:
            raise TestSetError(f"--out-of-range must be one of {', '.join(OUT_OF_RANGE)}, got {self.out_of_range!r}")
        if self.fit and self.model_dx is not None:
            raise TestSetError("--fit resamples each model onto the grid whatever its cell size; give --fit or "
                               "--model-dx, not both")


def option_flag(name: str) -> str:
    """The command-line flag of an option: ``min_salt`` -> ``--min-salt``."""
    return "--" + name.replace("_", "-")


def add_option_arguments(parser, help: dict[str, str], metavars: dict | None = None) -> None:
    """Add one flag per :class:`TestSetOptions` field to an argparse ``parser``: type, allowed values,
    count and default from the schema (``help``: the text of each field, the default appended)."""
    metavars = metavars or {}
    kinds = {"number": float, "integer": int, "string": str}
    for f in fields(TestSetOptions):
        spec = OPTION_SCHEMA[f.name]
        types = [t for t in ([spec["type"]] if isinstance(spec["type"], str) else spec["type"]) if t != "null"]
        kwargs: dict = {"default": f.default, "dest": f.name}
        text = help.get(f.name) or spec.get("description", "")
        if types == ["boolean"]:
            kwargs["action"] = "store_true"
        else:
            if types == ["array"]:
                kwargs.update(type=kinds[spec["items"]["type"]], nargs=spec["maxItems"])
            else:
                kwargs["type"] = kinds[types[0]]
            if "enum" in spec:
                kwargs["choices"] = spec["enum"]
            if f.name in metavars:
                kwargs["metavar"] = metavars[f.name]
            if f.default is not None:  # a None default is what the help text says happens without it
                text += f" (default: {f.default})"
        parser.add_argument(option_flag(f.name), help=text, **kwargs)


@dataclass
class ModelFile:
    """One input file: its path, identity and models after resampling.

    Attributes:
        models: float32 ``[n, mz, mx]`` m/s on the study's cell size.
        resample: zoom factors ``(depth, offset)`` applied to the file's models.
    """

    path: Path
    sha256: str
    shape: tuple[int, int, int]
    models: np.ndarray
    resample: tuple[float, float]
    variable: str | None = None
    generator: dict | None = None  # models drawn by the generator (no file): its family, samples and seed

    def record(self) -> dict:
        if self.generator is not None:
            return dict(self.generator)
        return {"path": str(self.path.resolve()), "sha256": self.sha256, "shape": list(self.shape),
                "resample": [float(f) for f in self.resample], "variable": self.variable}


@dataclass
class Windows:
    """The windows chosen for a test set, ``[n, nz, nx]`` m/s with one provenance row each."""

    velocity: np.ndarray
    file: list[int] = field(default_factory=list)
    model: list[int] = field(default_factory=list)
    iz: list[int] = field(default_factory=list)
    ix: list[int] = field(default_factory=list)
    clipped_cells: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.velocity)

    def rows(self, a: int, b: int) -> dict:
        return {k: getattr(self, k)[a:b] for k in ("file", "model", "iz", "ix", "clipped_cells")}


def _natural_key(path: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.name)]


def model_files(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """The model files of ``inputs``, in order: a file is itself, a folder its files with a model
    extension (:data:`MODEL_SUFFIXES`, not hidden) in natural order.

    Raises:
        TestSetError: nothing given, a missing path, a file of another extension, or a folder
            without model files.
    """
    if not inputs:
        raise TestSetError("no model files given; pass files or folders of .npy, .h5, .sgy or .mat models")
    out: list[Path] = []
    for entry in map(Path, inputs):
        if entry.is_dir():
            found = sorted((p for p in entry.iterdir() if p.is_file() and not p.name.startswith(".")
                            and p.suffix.lower() in MODEL_SUFFIXES), key=_natural_key)
            if not found:
                raise TestSetError(f"{entry}: a folder without model files ({', '.join(MODEL_SUFFIXES)})")
            out += found
        elif entry.is_file():
            if entry.suffix.lower() not in MODEL_SUFFIXES:
                raise TestSetError(f"{entry}: unknown model file extension {entry.suffix!r}; use "
                                   f"{', '.join(MODEL_SUFFIXES)}")
            out.append(entry)
        else:
            raise TestSetError(f"{entry}: no such model file or folder")
    from fwi_attn.io.files import check_distinct

    try:
        check_distinct(out, "model files")
    except ValueError as e:
        raise TestSetError(str(e)) from None
    return out


def resample_models(models: np.ndarray, nz: int, nx: int, dx: float, options: TestSetOptions,
                    where: str = "model") -> tuple[np.ndarray, tuple[float, float]]:
    """Bring a file's models ``[n, mz, mx]`` (m/s) to the study's cell size ``dx`` (m).

    ``options.fit``: each model is resampled onto ``(nz, nx)`` as ``fwi-attn simulate`` does
    (:func:`fwi_attn.data.geology.load_velocities`' rules). ``options.model_dx``: zoomed by
    ``model_dx / dx`` (``scipy.ndimage.zoom``, linear). Neither: returned as they are.

    Returns:
        float32 ``[n, mz', mx']`` and the zoom factors ``(mz'/mz, mx'/mx)``.
    """
    from scipy import ndimage

    from fwi_attn.data.velocity_files import MAX_ASPECT_CHANGE, resample

    n, mz, mx = models.shape
    if options.fit:
        change = (mz / mx) / (nz / nx)
        if min(mz, mx) < 2 or ((mz, mx) != (nz, nx) and not 1 / MAX_ASPECT_CHANGE <= change <= MAX_ASPECT_CHANGE):
            raise TestSetError(f"{where}: models of {mz} x {mx} cells cannot be fitted onto the {nz} x {nx} grid "
                               f"(aspect nz/nx changes {max(change, 1 / change):.3g}x, at most "
                               f"{MAX_ASPECT_CHANGE:g}x); cut windows instead (drop --fit, give --model-dx)")
        out = np.stack([resample(m.astype(np.float64), nz, nx) for m in models]).astype(np.float32)
        return out, (nz / mz, nx / mx)
    if options.model_dx is None or options.model_dx == dx:
        return models.astype(np.float32, copy=False), (1.0, 1.0)
    factor = options.model_dx / dx
    out = np.stack([ndimage.zoom(m.astype(np.float64), factor, order=1) for m in models]).astype(np.float32)
    return out, (out.shape[1] / mz, out.shape[2] / mx)


def window_origins(shape: tuple[int, int], nz: int, nx: int, stride: tuple[int, int] | None = None,
                   top: int = 0) -> list[tuple[int, int]]:
    """Top-left cells ``(iz, ix)`` of every ``nz x nx`` window inside a model of ``shape``.

    Rows start at ``top`` and step ``stride[0]`` cells (0: one row), columns start at 0 and step
    ``stride[1]``; the default stride is the window size. Empty when the model is smaller.
    """
    mz, mx = shape
    sz, sx = stride if stride is not None else (nz, nx)
    if top + nz > mz or nx > mx:
        return []
    rows = [top] if sz == 0 else list(range(top, mz - nz + 1, sz))
    return [(iz, ix) for iz in rows for ix in range(0, mx - nx + 1, sx)]


def read_model_file(path: Path, survey, options: TestSetOptions) -> ModelFile:
    """Read, identify (sha256) and resample one model file; errors name the file."""
    from fwi_attn.data.velocity_files import read_velocity_file
    from fwi_attn.io.files import file_sha256

    try:
        raw = read_velocity_file(path, options.variable)
    except FileNotFoundError as e:
        raise TestSetError(str(e)) from None
    models, factor = resample_models(raw, survey.nz, survey.nx, survey.dx, options, where=str(path))
    return ModelFile(path=path, sha256=file_sha256(path), shape=tuple(int(s) for s in raw.shape), models=models,
                     resample=factor, variable=options.variable)


def generated_models(cfg, family: str, samples: int | None, seed: int) -> ModelFile:
    """``samples`` models of the generator's ``family`` on the study's grid and geology, drawn
    from ``numpy.random.default_rng(SeedSequence([seed, *family.encode()]))``: the same seed gives
    the same models, and each family its own draws."""
    from fwi_attn.data.geology import FAMILIES, generate_velocity

    if family not in FAMILIES:
        raise TestSetError(f"--family {family!r} is not a velocity-model family (one of {', '.join(FAMILIES)})")
    if samples is None or samples < 1:
        raise TestSetError(f"--family {family} needs --samples N (at least 1 model), got {samples}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), *family.encode()]))
    sv = cfg.survey
    models = generate_velocity(family, samples, rng, sv.nz, sv.nx, sv.dx, cfg.geology)
    return ModelFile(path=Path(f"family {family}"), sha256="", shape=tuple(models.shape), models=models,
                     resample=(1.0, 1.0), generator={"family": family, "samples": int(samples), "seed": int(seed)})


def select_windows(files: Sequence[ModelFile], nz: int, nx: int, vmin: float, vmax: float,
                   salt_threshold: float, options: TestSetOptions,
                   log: Callable[[str], None] = print) -> Windows:
    """Cut, filter, range-check and draw the windows of ``files`` (see :class:`TestSetOptions`).

    Raises:
        TestSetError: a file whose models are smaller than one window, or no window left.
    """
    candidates = []  # (file, model, iz, ix)
    for k, f in enumerate(files):
        origins = window_origins(f.models.shape[1:], nz, nx, options.stride, options.top)
        if not origins:
            raise TestSetError(f"{f.path}: models of {f.models.shape[1]} x {f.models.shape[2]} cells at the study's "
                               f"dx (zoom {f.resample[0]:.4g}) hold no {nz} x {nx} window below row {options.top}; "
                               f"give its cell size with --model-dx, use --fit, or lower --top")
        candidates += [(k, m, iz, ix) for m in range(len(f.models)) for iz, ix in origins]
    n_cut = len(candidates)

    def window(c):
        k, m, iz, ix = c
        return files[k].models[m, iz:iz + nz, ix:ix + nx]

    if options.min_salt > 0:
        candidates = [c for c in candidates if (window(c) > salt_threshold).mean() >= options.min_salt]
        log(f"{n_cut - len(candidates)} of {n_cut} windows have less than {options.min_salt:g} salt "
            f"(> {salt_threshold:g} m/s): dropped")
    outside = [c for c in candidates if window(c).min() < vmin or window(c).max() > vmax]
    if outside:
        verb = "rejected" if options.out_of_range == "reject" else "clipped into range"
        log(f"{len(outside)} of {len(candidates)} windows have velocities outside geology.vmin..vmax "
            f"[{vmin:g}, {vmax:g}] m/s: {verb}")
        if options.out_of_range == "reject":
            bad = set(outside)
            candidates = [c for c in candidates if c not in bad]
    if not candidates:
        raise TestSetError(f"no window of {nz} x {nx} cells is left of {n_cut} cut from {len(files)} file(s) "
                           f"(--min-salt {options.min_salt:g}, --out-of-range {options.out_of_range}); relax "
                           f"those options")
    if options.max_windows is not None and len(candidates) > options.max_windows:
        rng = np.random.default_rng(options.seed)
        keep = np.sort(rng.choice(len(candidates), size=options.max_windows, replace=False))
        log(f"kept {options.max_windows} of {len(candidates)} windows (seed {options.seed})")
        candidates = [candidates[i] for i in keep]
    out = Windows(velocity=np.empty((len(candidates), nz, nx), dtype=np.float32))
    for i, c in enumerate(candidates):
        w = window(c)
        clipped = int(((w < vmin) | (w > vmax)).sum())
        out.velocity[i] = np.clip(w, vmin, vmax)
        for name, value in zip(("file", "model", "iz", "ix", "clipped_cells"), (*c, clipped)):
            getattr(out, name).append(int(value))
    return out


def check_out_folder(out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse an unwritable ``out``, or one holding ``*.h5`` files (unless ``overwrite``: then the
    old shards and summary are removed), since every ``*.h5`` there would count as test data."""
    from fwi_attn.io.files import check_output

    out = check_output(out, folder=True)
    old = sorted(out.glob("*.h5")) if out.is_dir() else []
    if old and not overwrite:
        raise TestSetError(f"--out {out} already holds {len(old)} .h5 file(s) (e.g. {old[0].name}), which would "
                           f"mix with the new set; remove them, choose another folder, or pass --overwrite")
    return out


def check_complete(folder: str | os.PathLike) -> dict:
    """Refuse a test-set folder whose ``fwi-attn testset`` run did not finish; return its summary.

    ``testset.json`` is written last and atomically, so its presence marks a complete set; it must
    list exactly the folder's ``*.h5`` shards (a shard added or lost since is refused too). Every
    reader of a set (``evaluate --test-set``, ``compare-sets``, the workflow through them) calls this.

    Raises:
        TestSetError: naming the folder, what is missing and the command that completes the set.
    """
    folder = Path(folder)
    shards = sorted(p.name for p in folder.glob("*.h5"))
    name = "NAME"
    if shards:
        import h5py

        try:
            with h5py.File(folder / shards[0], "r") as f:
                value = f.attrs.get("dataset", name)
                name = value.decode() if isinstance(value, bytes) else str(value)
        except OSError:
            pass
    rebuild = (f"complete it with `fwi-attn testset MODELS --config C --name {name} --out {folder} --overwrite` "
               f"(or the workflow's testset rule)")
    summary_path = folder / SUMMARY_NAME
    if not summary_path.is_file():
        raise TestSetError(f"{folder}: test set incomplete: no {SUMMARY_NAME} beside its {len(shards)} shard(s) "
                           f"(the `fwi-attn testset` that wrote them did not finish); {rebuild}")
    try:
        summary = json.loads(summary_path.read_text())
    except (OSError, ValueError, UnicodeError) as e:
        raise TestSetError(f"{summary_path}: unreadable ({' '.join(str(e).split())}); {rebuild}") from None
    from fwi_attn.io.checked_json import verify_checked

    summary = verify_checked(summary, summary_path, rebuild.removeprefix("complete it with "), TestSetError)
    if not isinstance(summary, dict) or summary.get("schema") != SUMMARY_SCHEMA:
        raise TestSetError(f"{summary_path}: not a {SUMMARY_SCHEMA} summary; {rebuild}")
    listed = sorted(summary.get("shards") or [])
    if listed != shards:
        missing, extra = sorted(set(listed) - set(shards)), sorted(set(shards) - set(listed))
        what = "; ".join(x for x in (f"missing {', '.join(missing)}" if missing else "",
                                     f"not in the set: {', '.join(extra)}" if extra else "") if x)
        raise TestSetError(f"{folder}: the shards differ from those {SUMMARY_NAME} lists ({what}); {rebuild}")
    return summary


def build_test_set(cfg, inputs: Sequence[str | os.PathLike], name: str, out: str | os.PathLike,
                   options: TestSetOptions = TestSetOptions(), *, shard_size: int | None = None,
                   overwrite: bool = False, device: str | None = None, progress: bool = False,
                   log: Callable[[str], None] = print, family: str | None = None,
                   samples: int | None = None) -> list[Path]:
    """Make a test split of ``inputs`` on ``cfg``'s survey in the folder ``out``.

    With ``family`` (and no ``inputs``), the set's models are ``samples`` models drawn from that
    family of the generator (:func:`generated_models`, seeded by ``options.seed``) instead of
    files; the shards then record ``family`` = ``family``.

    Every input is read and checked, and ``out`` checked for writability, before any
    simulation. Shards ``out/shard-NNNN.h5`` (``shard_size`` samples each, default the study
    dataset's) hold the windows and their gathers (schema ``fwi-attn/1``, ``dataset`` = ``name``,
    ``split`` = ``test``, ``family`` = ``import``, ``seed`` = ``options.seed``, ``provenance`` as in
    the module docstring); ``out/testset.json`` (written last) summarises the set.

    Returns:
        The shard paths, in order.

    Raises:
        TestSetError / ValueError: unusable inputs or options, each naming the file at fault.
        OutputError: ``out`` cannot be written.
    """
    from fwi_attn.data.simulate import shard_attrs, simulate
    from fwi_attn.data.survey import Survey
    from fwi_attn.io.files import write_json
    from fwi_attn.io.shard import write_shard
    from fwi_attn.layout import shard_sizes

    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name or ""):
        raise TestSetError(f"test set name {name!r} must be letters, digits, '_', '.' or '-' (it names files)")
    options.check()
    size = shard_size or cfg.datasets[cfg.study.dataset].shard_size
    if size < 1:
        raise TestSetError(f"--shard-size must be at least 1, got {size}")
    if (family is None) == (not inputs):
        raise TestSetError("give model files or --family (with --samples), not both and not neither")
    if family is not None and (options.fit or options.model_dx is not None or options.variable is not None):
        raise TestSetError("--family draws models on the study's grid: --fit, --model-dx and --variable do not apply")
    out = check_out_folder(out, overwrite)
    paths = model_files(inputs) if family is None else []
    survey = Survey.from_config(cfg)
    vmin, vmax = float(cfg.geology.vmin), float(cfg.geology.vmax)
    survey.check(vmin, vmax)
    if family is None:
        files = [read_model_file(p, survey, options) for p in paths]
    else:
        files = [generated_models(cfg, family, samples, options.seed)]
    windows = select_windows(files, survey.nz, survey.nx, vmin, vmax, cfg.evaluate.salt_threshold, options, log)
    for f in files:
        f.models = None  # the windows are copies; free the resampled models before simulating

    # The summary marks a complete set: an old one goes before the first new shard is written,
    # and the new one is written last (atomically), so a set stopped half-way has none.
    (out / SUMMARY_NAME).unlink(missing_ok=True)
    if overwrite:
        for old in out.glob("*.h5"):
            old.unlink(missing_ok=True)
    from fwi_attn.io.files import check_space
    from fwi_attn.io.shard import shard_nbytes

    check_space(out, shard_nbytes(len(windows), survey.n_shots, survey.nt, survey.n_receivers, survey.nz, survey.nx))
    records = [f.record() for f in files]
    written, start = [], 0
    for i, n in enumerate(shard_sizes(len(windows), size)):
        velocity = windows.velocity[start:start + n]
        gathers = simulate(velocity, survey, device=device or cfg.study.device,
                           models_per_call=cfg.survey.models_per_call, progress=progress,
                           where=f"test set {name}, shard {i}")
        rows = windows.rows(start, start + n)
        used = sorted(set(rows["file"]))  # only this shard's files: the attribute stays small
        rows["file"] = [used.index(k) for k in rows["file"]]
        provenance = {"set": name, "files": [records[k] for k in used], **rows, "options": asdict(options)}
        attrs = shard_attrs(survey, cfg, dataset=name, split="test", shard=i, seed=options.seed,
                            family=family or "import",
                            provenance=provenance)
        path = out / f"shard-{i:04d}.h5"
        write_shard(path, velocity, gathers, survey.source_xz, survey.receiver_xz, attrs)
        written.append(path)
        start += n
    salt = (windows.velocity > cfg.evaluate.salt_threshold).mean(axis=(1, 2))
    summary = {"schema": SUMMARY_SCHEMA, "name": name, "n_samples": len(windows), "shards": [p.name for p in written],
               "files": records, "options": asdict(options),
               "grid": {"nz": survey.nz, "nx": survey.nx, "dx": survey.dx},
               "velocity": {"min": float(windows.velocity.min()), "max": float(windows.velocity.max()),
                            "mean": float(windows.velocity.mean())},
               "salt_fraction_mean": float(salt.mean()), "clipped_cells": int(sum(windows.clipped_cells))}
    write_json(out / SUMMARY_NAME, summary)
    return written
