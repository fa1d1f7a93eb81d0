"""Study configuration: load a YAML file, fill defaults and validate it.

The JSON schema in ``fwi_attn/config/schema.yaml`` (linked from ``workflows/schemas/``) is the single source of
truth for keys, types, ranges, defaults and allowed values; Snakemake validates against the
same file. On top of the schema this module checks what a schema cannot express
(``vmin < vmax``, sources inside the grid, a record long enough for the deepest
reflection), so a bad config fails before any work, naming the key at fault. The physics
checks of a discretisation (CFL, dispersion, aliasing) live in
:meth:`fwi_attn.data.survey.Survey.check` alone.

Derived values are computed here, once, and recorded in the resolved config (see
:func:`_resolve`): e.g. a null ``survey.peak_time`` becomes ``1.5 / survey.freq``. Loading
a resolved config again gives it back unchanged, so the config sections stored in shards
and checkpoints compare equal to a fresh load of the same file.

Sections come back as read-only attribute objects (:class:`Section`), e.g.
``cfg.survey.dx`` or ``cfg.datasets["salt"].samples.train``; ``cfg.to_dict()``
gives the plain, default-filled, resolved dictionary that is stored in every HDF5 shard.
:func:`validate_section` validates one section alone (the geology generator uses it for
a params dict that did not come through :func:`load_config`).
"""
from __future__ import annotations

import copy
import functools
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from fwi_attn.config.device import resolve_device
from fwi_attn.config.record import reflection_time

# Package data, so that a non-editable install finds them; workflows/schemas/config.schema.yaml
# and workflows/config/*.yaml in the repository are links to these files.
SCHEMA_PATH = Path(__file__).resolve().parent / "schema.yaml"
PRESETS_DIR = Path(__file__).resolve().parent / "presets"


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or impossible."""


class Section(Mapping):
    """A read-only view of one config section with attribute access.

    Nested mappings are Sections too; lists become tuples. It is a ``Mapping``,
    so ``dict(section)`` and ``section["key"]`` work where a dict is wanted.
    """

    def __init__(self, data: Mapping[str, Any], path: str = ""):
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_data", {k: _freeze(v, f"{path}{k}.") for k, v in data.items()})

    def __getattr__(self, name: str) -> Any:
        try:
            return self._data[name]
        except KeyError:
            raise AttributeError(f"config section '{self._path.rstrip('.') or '<root>'}' has no key '{name}'") from None

    def __setattr__(self, name, value):
        raise AttributeError("config sections are read-only")

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self):
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Section({self.to_dict()!r})"

    def to_dict(self) -> dict:
        return _thaw(self)


def _freeze(value: Any, path: str) -> Any:
    if isinstance(value, Mapping):
        return Section(value, path)
    if isinstance(value, list):
        return tuple(_freeze(v, path) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Section):
        return {k: _thaw(v) for k, v in value._data.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@functools.lru_cache(maxsize=1)
def _schema_text_parsed() -> dict:
    # libyaml's loader parses the schema ~8x faster than the pure-Python one; every job and
    # every Snakemake parse validates a config, so it is paid ~100 times per study.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with open(SCHEMA_PATH) as f:
        return yaml.load(f, Loader=loader)


def load_schema() -> dict:
    """The config schema (``schema.yaml``), parsed once per process; each caller gets its own copy."""
    return copy.deepcopy(_schema_text_parsed())


def _with_defaults(validator_class):
    """Extend a jsonschema validator so that validation also fills in defaults."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return jsonschema.validators.extend(validator_class, {"properties": set_defaults})


def _strict_types(validator_class):
    """JSON Schema calls 1.0 an integer; a seed of 0.0 would then name a folder ``seed0.0``."""
    checker = validator_class.TYPE_CHECKER.redefine(
        "integer", lambda _, v: isinstance(v, int) and not isinstance(v, bool))
    return jsonschema.validators.extend(validator_class, type_checker=checker)


_Validator = _with_defaults(_strict_types(jsonschema.Draft202012Validator))


def _non_finite(value: Any, key: str = "") -> list[str]:
    """Dotted keys of NaN/inf numbers (YAML's .nan passes every schema bound)."""
    if isinstance(value, Mapping):
        return [k for name, v in value.items() for k in _non_finite(v, f"{key}{name}.")]
    if isinstance(value, (list, tuple)):
        return [k for i, v in enumerate(value) for k in _non_finite(v, f"{key.rstrip('.')}[{i}].")]
    if isinstance(value, float) and not math.isfinite(value):
        return [key.rstrip(".")]
    return []


def _key_path(error: jsonschema.ValidationError, prefix: str = "") -> str:
    """Dotted key of an error; ``prefix`` is the section a sub-schema was validated for."""
    parts = ([prefix] if prefix else []) + [str(p) for p in error.absolute_path]
    return ".".join(parts) or "<root>"


def _explain(error: jsonschema.ValidationError, prefix: str = "") -> str:
    key = _key_path(error, prefix)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = key if key != "<root>" else "the top level"
        return (f"unknown key(s) {', '.join(repr(e) for e in extra)} in {where}; "
                f"allowed keys: {', '.join(allowed)}")
    if error.validator == "required":
        return f"{key}: {error.message}"
    hint = ""
    if "enum" in schema:
        hint = f" (allowed values: {', '.join(map(str, schema['enum']))})"
    elif error.validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "type",
                             "minItems", "maxItems", "pattern"):
        desc = schema.get("description")
        hint = f" ({desc})" if desc else ""
    return f"config key '{key}': {error.message}{hint}"


def _plain(value: Any) -> Any:
    """A deep copy made of dicts, lists and Python scalars (JSON Schema's types).

    Sections and other mappings become dicts, tuples lists, and numpy arrays or scalars (from
    direct Python use) their Python equivalents, so they validate like the YAML they stand for.
    """
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy, without importing it
        return _plain(value.tolist())
    return copy.deepcopy(value)


def _validate_schema(schema: dict, data: dict, source: str, prefix: str = "") -> None:
    """Default-fill ``data`` in place and validate it against ``schema``; raise one line naming the keys."""
    bad = _non_finite(data, f"{prefix}." if prefix else "")
    if bad:
        raise ConfigError(f"{source}: config key(s) {', '.join(repr(k) for k in bad)} must be finite numbers, "
                          f"not NaN or inf")
    validator = _Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(f"{source}: " + "; ".join(_explain(e, prefix) for e in errors[:5]))


def validate_dict(raw: Mapping[str, Any], source: str = "<config>") -> dict:
    """Fill defaults into a copy of ``raw``, validate it and resolve derived values; return it.

    The result is a fixed point: ``validate_dict(validate_dict(raw)) == validate_dict(raw)``.

    Raises:
        ConfigError: naming the file, the key, and the allowed values.
    """
    data = _plain(raw or {})
    _validate_schema(load_schema(), data, source)
    _resolve(data)
    _check_semantics(data, source)
    return data


def resolve_recorded(raw: Mapping[str, Any]) -> dict:
    """A config recorded in a shard or checkpoint, resolved as :func:`load_config` would now
    (defaults filled, derived values such as ``survey.peak_time`` resolved), so that it compares
    equal to today's config when it means the same. One that no longer validates comes back as
    recorded: it then differs from any valid config, as it should."""
    try:
        return validate_dict(raw)
    except ConfigError:
        return dict(raw)


#: Keys that say how a config is checked, not what is simulated or trained: data made under another value is the same data.
POLICY_KEYS = frozenset({"survey.record_check"})


def recorded_differences(recorded: Mapping[str, Any], cfg, keys, limit: int = 4) -> list[str]:
    """Where a config recorded in a shard or checkpoint differs from ``cfg`` in the dotted
    sections ``keys`` (e.g. ``"survey"``, ``"datasets.salt"``), after resolving it
    (:func:`resolve_recorded`): ``["survey.nz 24 (config 16)", ...]``, empty when they agree."""
    made, now = resolve_recorded(recorded), cfg.to_dict()
    out: list[str] = []
    for key in keys:
        old, new = made, now
        for part in key.split("."):
            old = old.get(part) if isinstance(old, Mapping) else None
            new = new.get(part) if isinstance(new, Mapping) else None
        out += _value_differences(old, new, key, limit - len(out))
        if len(out) >= limit:
            break
    return out


def _value_differences(made, wanted, key: str, limit: int) -> list[str]:
    if key in POLICY_KEYS:
        return []
    if isinstance(made, Mapping) and isinstance(wanted, Mapping):
        out = []
        for k in sorted(set(made) | set(wanted)):
            out += _value_differences(made.get(k), wanted.get(k), f"{key}.{k}", limit - len(out))
            if len(out) >= limit:
                break
        return out
    return [] if made == wanted else [f"{key} {made!r} (config {wanted!r})"]


def validate_section(name: str, raw: Mapping[str, Any] | None, source: str = "<config>") -> dict:
    """Validate, default-fill and resolve one top-level config section on its own.

    Errors name keys as :func:`load_config` would (``geology.salt.roughness``), and the
    section's own semantic checks run (e.g. ``geology.vmin < geology.vmax``); checks across
    sections (sources inside the survey grid, record length against geology velocities) need
    the whole config and run in :func:`validate_dict` only.

    Args:
        name: a top-level key of the schema (``survey``, ``geology``, ...).
        raw: the section's mapping (None or ``{}``: every default).
        source: what to name in an error (a file, or the function given the section).

    Returns:
        A new plain dict: the section as it appears in ``load_config(...).to_dict()[name]``.

    Raises:
        ConfigError: an unknown section, or any bad key of it.
    """
    schema = load_schema()
    if name not in schema["properties"]:
        raise ConfigError(f"{source}: unknown config section '{name}'; sections: "
                          f"{', '.join(schema['properties'])}")
    if raw is not None and not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: config section '{name}' must be a mapping, got {type(raw).__name__}")
    data = _plain(raw or {})
    # $defs travel with the sub-schema so that its "#/$defs/..." references still resolve.
    _validate_schema({**schema["properties"][name], "$defs": schema.get("$defs", {})}, data, source, name)
    resolve = _SECTION_RESOLVERS.get(name)
    if resolve:
        resolve(data)
    check = _SECTION_CHECKS.get(name)
    problems = check(data) if check else []
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))
    return data


# ----------------------------------------------------------------------------- derived values


def _resolve_survey(s: dict) -> None:
    """Record the Ricker peak time: a null ``peak_time`` is 1.5 periods (1.5 / freq s), late enough
    that the wavelet starts at (numerically) zero amplitude."""
    if s["peak_time"] is None:
        s["peak_time"] = 1.5 / s["freq"]


_SECTION_RESOLVERS = {"survey": _resolve_survey}


def _resolve(c: dict) -> None:
    """Compute every derived value once and record it in the config ``c`` (in place).

    Only nulls are replaced, by values that validate, so resolving a resolved config changes
    nothing (what makes :func:`load_config` idempotent).
    """
    for name, resolve in _SECTION_RESOLVERS.items():
        resolve(c[name])


# ----------------------------------------------------------------------------- semantic checks


#: The schema's ``$defs`` that mark a ``[low, high]`` range, and the kind of value each holds.
RANGE_DEFS = {"count_range": "count", "range_pos": "real", "range_nonneg": "real", "fraction_range": "real"}


def range_keys(section: str) -> dict[str, str]:
    """The ``[low, high]`` range keys of a config section, as the schema marks them (a ``$ref`` to
    one of :data:`RANGE_DEFS`): dotted key within the section -> ``"count"`` or ``"real"``.

    E.g. ``range_keys("geology")["layers.count"] == "count"``.
    """
    return dict(_range_keys(section))


@functools.cache
def _range_keys(section: str) -> tuple[tuple[str, str], ...]:
    found = []

    def walk(schema: dict, key: str) -> None:
        ref = schema.get("$ref", "")
        if ref.startswith("#/$defs/") and ref.rpartition("/")[2] in RANGE_DEFS:
            found.append((key, RANGE_DEFS[ref.rpartition("/")[2]]))
        for name, sub in schema.get("properties", {}).items():
            walk(sub, f"{key}.{name}" if key else name)

    walk(_schema_text_parsed()["properties"][section], "")
    return tuple(found)


def _geology_problems(g: dict) -> list[str]:
    """Orderings within the geology section: vmin < vmax, ranges low <= high, velocities in bounds."""
    problems: list[str] = []
    if g["vmin"] >= g["vmax"]:
        problems.append(f"geology.vmin ({g['vmin']}) must be below geology.vmax ({g['vmax']})")
    for key in range_keys("geology"):
        group, name = key.split(".")
        lo, hi = g[group][name]
        if lo > hi:
            problems.append(f"geology.{key} is [{lo}, {hi}]: the first value must not exceed the second")
    for key in ("salt.velocity", "layers.v_top", "layers.v_bottom", "layers.v_seabed", "layers.v_deep"):
        group, name = key.split(".")
        lo, hi = g[group][name]
        if lo < g["vmin"] or hi > g["vmax"]:
            problems.append(f"geology.{key} [{lo}, {hi}] m/s lies outside [geology.vmin, geology.vmax] = "
                            f"[{g['vmin']}, {g['vmax']}]")
    if g["layers"]["v_deep"][1] >= g["salt"]["velocity"][0]:
        problems.append(f"geology.layers.v_deep upper bound ({g['layers']['v_deep'][1]}) must lie below "
                        f"geology.salt.velocity's lower bound ({g['salt']['velocity'][0]}), or sediments "
                        "could not be told from salt")
    if sum(g["salt"]["kinds"].values()) <= 0:
        problems.append("geology.salt.kinds are all 0: give at least one body kind a positive rate "
                        "(or set geology.salt.none_probability to 1 for windows without salt)")
    if not g["vmin"] <= g["water"]["velocity"] <= g["vmax"]:
        problems.append(f"geology.water.velocity ({g['water']['velocity']}) lies outside [vmin, vmax]")
    return problems


_SECTION_CHECKS = {"geology": _geology_problems}


def _survey_problems(s: dict, g: dict, families=("salt",)) -> list[str]:
    """Geometry inside the grid, distinct source/receiver cells, and a long enough record.

    The record must hold the deepest reflection of every family in ``families``
    (:func:`fwi_attn.config.record.reflection_time`); the stability of the discretisation
    (CFL, dispersion, aliasing) is :meth:`fwi_attn.data.survey.Survey.check`'s, not repeated here.
    """
    problems: list[str] = []
    x_max = (s["nx"] - 1) * s["dx"]
    z_max = (s["nz"] - 1) * s["dx"]
    for kind in ("source", "receiver"):
        x0, x1 = s[f"{kind}_x"]
        for name, x in ((f"survey.{kind}_x[0]", x0), (f"survey.{kind}_x[1]", x1)):
            if not 0 <= x <= x_max:
                problems.append(f"{name} = {x} m lies outside the grid: allowed 0 to {x_max:g} m "
                                f"((nx-1)*dx)")
        depth = s[f"{kind}_depth"]
        if depth > z_max:
            problems.append(f"survey.{kind}_depth = {depth} m lies below the grid: allowed 0 to {z_max:g} m")
        if s["free_surface"] and depth < s["dx"] / 2:
            problems.append(f"survey.{kind}_depth = {depth} m is on the free surface, where the pressure "
                            f"is zero: put it at least one cell ({s['dx']:g} m) deep")
    if s["n_shots"] > 1 and s["source_x"][0] == s["source_x"][1]:
        problems.append("survey.source_x: first and last source coincide but n_shots > 1")
    # Positions are rounded to cells: two sources or receivers closer than a cell would share one.
    for kind, count in (("source", "n_shots"), ("receiver", "n_receivers")):
        x0, x1 = s[f"{kind}_x"]
        most = int(abs(x1 - x0) // s["dx"]) + 1
        if s[count] > 1 and s[count] > most and x0 != x1:
            problems.append(f"survey.{count} = {s[count]} puts several {kind}s in one grid cell: "
                            f"survey.{kind}_x spans {abs(x1 - x0):g} m = {most} cells of {s['dx']:g} m; "
                            f"use at most {most}")

    peak_time = s["peak_time"]  # resolved by _resolve_survey
    record = s["nt"] * s["dt"]
    if peak_time >= record:
        problems.append(f"survey.peak_time ({peak_time:g} s) is beyond the record length nt*dt = {record:g} s")
    # The deepest primary reflection at the largest offset, through the slowest velocity profile
    # that any family of the study can draw (docs/geology.md): a shorter record cuts it off.
    arrivals = [(*reflection_time(s, g, family), family) for family in families]
    if arrivals:
        t_far, offset, v_rms, family = max(arrivals)
        if record < t_far - 1e-9 and s["record_check"] == "refuse":
            problems.append(
                f"survey.nt = {s['nt']} (record nt*dt = {record:g} s) ends before the reflection from the "
                f"model's bottom at {offset:g} m offset through the slowest {family} profile the geology can "
                f"draw (RMS {v_rms:.0f} m/s): it arrives at {t_far:.3f} s, wavelet peak included; raise "
                f"survey.nt to at least {math.ceil(t_far / s['dt'] - 1e-9)} or survey.dt to at least "
                f"{_round_up(t_far / s['nt']):g} s (within the aliasing limit), or reproduce a published "
                f"protocol's short record knowingly with survey.record_check: allow_short")
    return problems


TRANSFER_PREFIX = "transfer-"  # a family-transfer test set is named transfer-<family> (docs/testsets.md)


def _study_problems(st: dict) -> list[str]:
    """The reference among the variants, and test-set names that name one set each."""
    problems = []
    if st["reference"] not in st["variants"]:
        problems.append(f"study.reference '{st['reference']}' is not one of study.variants "
                        f"({', '.join(st['variants'])}); the report ranks variants against it: add it to "
                        f"study.variants or choose one of them")
    names = [t["name"] for t in st["test_sets"]] + [TRANSFER_PREFIX + f for f in st["transfer_families"]]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        problems.append(f"study.test_sets names must be unique and differ from the family-transfer sets' "
                        f"({', '.join(names)}): {', '.join(repeated)} is given twice; rename it")
    return problems


def _round_up(x: float, digits: int = 2) -> float:
    """``x`` rounded up to ``digits`` significant digits (a bound that still holds when printed)."""
    scale = 10 ** (digits - 1 - math.floor(math.log10(x)))
    return math.ceil(x * scale - 1e-9) / scale


def _design_problems(st: dict) -> list[str]:
    """The two-stage design's rules (docs/study.md): fresh confirmation seeds, something to select."""
    confirm = st.get("confirm") or {}
    if not confirm.get("seeds"):
        return []
    problems = []
    if len(confirm["seeds"]) < 2:
        problems.append(f"study.confirm.seeds {confirm['seeds']}: the confirmation needs at least 2 seeds (the "
                        f"training variance is estimated from them); add seeds, or drop study.confirm for one stage")
    reused = sorted(set(confirm["seeds"]) & set(st["seeds"]))
    if reused:
        problems.append(f"study.confirm.seeds {reused} are also screening seeds (study.seeds): the confirmation "
                        f"needs fresh seeds, or its runs would be the very runs that were selected; choose others")
    from fwi_attn.catalogue import BASELINES

    pool = [v for v in st["variants"] if v != st["reference"] and v not in BASELINES]
    if confirm["top"] > len(pool):
        problems.append(f"study.confirm.top {confirm['top']} exceeds the {len(pool)} attention variant(s) the "
                        f"screening can select ({', '.join(pool) or 'none'}: study.variants without the reference "
                        f"and {', '.join(BASELINES)}); lower it or list more variants")
    return problems


def simulated_families(c: Mapping) -> list[str]:
    """The velocity-model families a study simulates on its survey: its datasets' and its
    ``study.transfer_families`` (``c``: a config or its dict)."""
    return sorted({d["family"] for d in c["datasets"].values()} | set(c["study"]["transfer_families"]))


def deepest_reflection(cfg: Mapping) -> tuple[float, str]:
    """``(seconds, family)``: the latest arrival the record must hold (see
    :func:`fwi_attn.config.record.reflection_time`) over the study's simulated families."""
    c = _plain(cfg)
    return max((reflection_time(c["survey"], c["geology"], f)[0], f) for f in simulated_families(c))


def _check_semantics(c: dict, source: str) -> None:
    """Checks the schema cannot express: orderings, geometry and record length (of a resolved config)."""
    families = simulated_families(c)
    problems = (_geology_problems(c["geology"]) + _survey_problems(c["survey"], c["geology"], families)
                + _study_problems(c["study"]) + _design_problems(c["study"]))
    base = {k: v for k, v in c["train"].items() if k != "per_variant"}
    for variant, override in c["train"].get("per_variant", {}).items():
        unknown = sorted(set(override) - set(base))
        if unknown:
            problems.append(f"train.per_variant.{variant}: {', '.join(unknown)} not train keys "
                            f"(valid: {', '.join(sorted(base))})")
        else:
            validate_section("train", {**base, **override}, f"{source} (train.per_variant.{variant})")
    if c["study"]["dataset"] not in c["datasets"]:
        problems.append(f"study.dataset '{c['study']['dataset']}' is not a key of datasets "
                        f"(defined: {', '.join(c['datasets'])})")
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))


def train_settings(cfg: Mapping, variant: str) -> Section:
    """The ``train`` section a variant trains with: ``train`` updated by
    ``train.per_variant[variant]`` (e.g. InversionNet's OpenFWI recipe beside the UNets' own)."""
    train = {k: v for k, v in _thaw(cfg["train"]).items() if k != "per_variant"}
    train.update(_thaw(cfg["train"].get("per_variant", {})).get(variant, {}))
    return Section(train, "train.")


class Config(Section):
    """A validated study configuration (see the schema for every key)."""

    def __init__(self, data: dict, path: str | None = None):
        super().__init__(data)
        object.__setattr__(self, "source", path)

    def dumps(self) -> str:
        """The default-filled config as canonical JSON (stored in shards)."""
        return json.dumps(self.to_dict(), sort_keys=True)


def load_config(path: str | Path | Mapping | None = None) -> Config:
    """Load, default-fill, validate and resolve a study config.

    Idempotent: ``load_config(load_config(x).to_dict()).to_dict() == load_config(x).to_dict()``.

    Args:
        path: a YAML file, a preset name (``default``, ``paper``, ``openfwi``) from
            ``workflows/config/``, an inline YAML/JSON mapping (text starting with ``{``), an
            already-parsed mapping, or None for the defaults.

    Raises:
        ConfigError: for an unreadable file or any invalid key, naming it.
    """
    if isinstance(path, Mapping):
        return Config(validate_dict(path), None)
    if path is None:
        return Config(validate_dict({}), None)
    text = str(path)
    if text.lstrip().startswith("{"):
        # An inline mapping (the workflow hands each job its config this way: no file that
        # another run could rewrite while this one runs).
        try:
            raw = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise ConfigError(f"inline config: not valid YAML/JSON: {' '.join(str(e).split())}") from None
        return Config(validate_dict(raw, "inline config"), None)
    p = Path(path)
    if not p.exists() and (PRESETS_DIR / f"{path}.yaml").exists():
        p = PRESETS_DIR / f"{path}.yaml"
    if not p.exists():
        raise ConfigError(f"config file {p} does not exist (presets: "
                          f"{', '.join(sorted(q.stem for q in PRESETS_DIR.glob('*.yaml')))})")
    if p.is_dir():
        raise ConfigError(f"config {p} is a folder; give a YAML file in it or a preset name")
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.start}); save the config as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read the config: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {' '.join(str(e).split())}") from None
    if raw is None:
        # Snakemake refuses an empty config file too; silently running every default is worse.
        raise ConfigError(f"{p}: the config file is empty; give the sections you change (an empty mapping "
                          f"'{{}}' means every default), or a preset name")
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections, got {type(raw).__name__}")
    return Config(validate_dict(raw, str(p)), str(p))
