"""The study's two stages and the selection between them (``docs/study.md``).

* **Screening** trains every variant of ``study.variants`` on ``study.seeds`` and ranks the
  attention variants by *validation* MAE (each run's saved model, i.e. the best epoch of its
  ``history.csv``); its test figures are point estimates, never claims.
* **Selection** (``fwi-attn select``, a Snakemake checkpoint) keeps the ``study.confirm.top``
  best-screened attention variants and adds the controls each needs: ``none_salt`` where a
  selected variant trains with m2f's salt loss, ``none_wide`` (the plain UNet at the width whose
  parameter count is nearest the largest selected variant's) where that width differs from the
  reference's. It writes ``selection.json`` with every score and reason.
* **Confirmation** trains the selected variants, the reference and the controls on the fresh
  ``study.confirm.seeds`` and scores them on the test split: the only comparisons the report
  states as results.

A study without ``study.confirm`` has one stage, whose comparisons on the test split are its
results (as before the two stages existed).
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from fwi_attn.catalogue import BASELINES, CONTROLS
from fwi_attn.io.checked_json import verify_checked
from fwi_attn.layout import RUN

SELECTION_SCHEMA = "fwi-attn-selection/1"


class SelectionError(ValueError):
    """The screening results cannot support a selection, or selection.json is unreadable."""


def confirm_settings(config: dict) -> dict | None:
    """``study.confirm`` of a config dict, or None for a one-stage study (no confirmation seeds)."""
    confirm = (config.get("study") or {}).get("confirm") or {}
    return confirm if confirm.get("seeds") else None


def stage_seeds(config: dict) -> dict[str, list[int]]:
    """``{"screen": seeds, "confirm": seeds}`` (``confirm`` empty for a one-stage study)."""
    st = config.get("study") or {}
    confirm = confirm_settings(config)
    return {"screen": list(st.get("seeds", [])), "confirm": list(confirm["seeds"]) if confirm else []}


def candidates(config: dict) -> list[str]:
    """The attention variants the screening may select: ``study.variants`` without the reference,
    the baselines (:data:`BASELINES`) and the controls."""
    st = config["study"]
    return [v for v in st["variants"] if v != st["reference"] and v not in BASELINES and v not in CONTROLS]


def screen_scores(study_dir: str | os.PathLike, variants: list[str], seeds: list[int]) -> list[dict]:
    """Each variant's validation MAE on the screening seeds, lowest first.

    Returns:
        ``[{"variant", "val_mae" (mean over seeds), "per_seed": {seed: best val_mae}}]``; a run's
        figure is the lowest ``val_mae`` of its ``history.csv``, the epoch its ``model.pt`` holds.

    Raises:
        SelectionError: a run's history is missing or holds no validation MAE.
    """
    from fwi_attn.io.history import read_history
    from fwi_attn.layout import run_dir

    rows = []
    for v in variants:
        per_seed = {}
        for s in seeds:
            path = run_dir(Path(study_dir), v, s) / RUN.history
            if not path.is_file():
                raise SelectionError(f"{path} is missing: the screening run {v} seed {s} has not been trained; "
                                     f"train it before selecting")
            val = [x for x in read_history(path).get("val_mae", []) if math.isfinite(x)]
            if not val:
                raise SelectionError(f"{path} holds no validation MAE; re-train {v} seed {s}")
            per_seed[s] = float(min(val))
        rows.append({"variant": v, "val_mae": sum(per_seed.values()) / len(per_seed), "per_seed": per_seed})
    return sorted(rows, key=lambda r: r["val_mae"])


def _built(cfg, name: str, width: int | None = None):
    """``name`` as the study would build it, on the meta device (no memory, no compute)."""
    import torch

    from fwi_attn.learn.train import model_hyper
    from fwi_attn.nn.models import create_model

    s = cfg.survey
    shape = dict(in_shots=s.n_shots, nt=s.nt, n_receivers=s.n_receivers, nz=s.nz, nx=s.nx)
    with torch.device("meta"):
        return create_model(name, **shape, **model_hyper(cfg, width))


def parameter_count(cfg, name: str, width: int | None = None) -> int:
    """Parameters of variant ``name`` as the study builds it (``width``: another base width)."""
    from fwi_attn.nn.models import count_params

    return count_params(_built(cfg, name, width))


def matched_width(cfg, target: int, limit: int = 8) -> tuple[int, int]:
    """The plain UNet's base width whose parameter count is nearest ``target``, from
    ``model.width`` up to ``limit`` times it.

    Returns:
        ``(width, parameters)``.
    """
    base = int(cfg.model.width)
    best = (base, parameter_count(cfg, "none", base))
    for width in range(base + 1, base * limit + 1):
        count = parameter_count(cfg, "none", width)
        if abs(count - target) < abs(best[1] - target):
            best = (width, count)
        if count > target:
            break
    return best


def select(cfg, study_dir: str | os.PathLike) -> dict:
    """The selection record of a two-stage study from its screening runs (module docstring).

    Raises:
        SelectionError: the config has no ``study.confirm``, or a screening run is missing.
    """
    config = cfg.to_dict()
    confirm = confirm_settings(config)
    if not confirm:
        raise SelectionError("the config has no study.confirm: a one-stage study selects nothing")
    seeds = stage_seeds(config)["screen"]
    pool = candidates(config)
    scores = screen_scores(study_dir, pool, seeds)
    chosen = [r["variant"] for r in scores[: confirm["top"]]]
    reference = config["study"]["reference"]
    controls = {}
    if confirm.get("controls", True):
        salted = [v for v in chosen if _built(cfg, v).needs_salt_supervision]
        if salted:
            controls["none_salt"] = {"for": salted, "isolates": "the salt supervision (train.m2f_salt_weight "
                                                                "on salt heads) that " + ", ".join(salted) + " gets"}
        counts = {v: parameter_count(cfg, v) for v in chosen}
        largest = max(chosen, key=counts.get)
        ref_count = parameter_count(cfg, reference)
        width, count = matched_width(cfg, counts[largest])
        if width != int(cfg.model.width) and reference == "none":
            controls["none_wide"] = {"for": chosen, "width": width, "parameters": count, "matches": largest,
                                     "target_parameters": counts[largest],
                                     "isolates": f"the parameter count ({largest}: {counts[largest]:,}; "
                                                 f"{reference}: {ref_count:,})"}
    return {
        "schema": SELECTION_SCHEMA,
        "criterion": f"validation MAE ([-1, 1] scale) of each screening run's saved model (its {RUN.history}'s "
                     "lowest val_mae), mean over the screening seeds; lowest first",
        "screen_seeds": seeds,
        "candidates": pool,
        "scores": scores,
        "top": int(confirm["top"]),
        "selected": chosen,
        "reference": reference,
        "controls": controls,
        "arms": [*chosen, reference, *controls],
        "confirm_seeds": list(confirm["seeds"]),
    }


def write_selection(path: str | os.PathLike, record: dict) -> Path:
    """``selection.json`` (with its ``sha256`` field), atomically."""
    from fwi_attn.io.files import write_json

    write_json(path, record)
    return Path(path)


def read_selection(path: str | os.PathLike) -> dict:
    """A ``selection.json`` written by :func:`write_selection`.

    Raises:
        SelectionError: unreadable, edited since written (its ``sha256``), or not a selection record.
    """
    try:
        record = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SelectionError(f"{path}: not a readable selection ({e}); rerun `fwi-attn select`") from None
    record = verify_checked(record, path, "`fwi-attn select`", SelectionError)
    if not isinstance(record, dict) or record.get("schema") != SELECTION_SCHEMA:
        raise SelectionError(f"{path}: not an fwi-attn selection (schema {SELECTION_SCHEMA}); rerun `fwi-attn select`")
    return record


def control_width(selection: dict, arm: str) -> int | None:
    """The base width an arm trains at (``none_wide``'s matched width), or None for the config's."""
    return (selection.get("controls", {}).get(arm) or {}).get("width")


def family(config: dict, arms: list[str], selection: dict | None, reference: str) -> list:
    """The comparisons whose results the report states, as one corrected family.

    Two-stage study: each selected variant against the reference, then against each control that
    applies to it (``selection["controls"][c]["for"]``). One-stage study: every other arm against
    the reference. Arms without runs are left out.

    Returns:
        :class:`fwi_attn.results.stats.Comparison` records, ``isolates`` saying what each arm
        compared with controls for.
    """
    from fwi_attn.results.stats import Comparison

    plain = f"the reference ({reference}): attention and whatever else differs"
    if selection is None or not confirm_settings(config):
        return [Comparison(v, reference, isolates=plain) for v in arms if v != reference]
    out = []
    for v in selection["selected"]:
        if v not in arms:
            continue
        out.append(Comparison(v, reference, isolates=plain))
        for control, spec in selection.get("controls", {}).items():
            if control in arms and v in spec.get("for", []):
                out.append(Comparison(v, control, isolates=f"{control}: {CONTROLS[control]}"))
    return out
