"""The study's models on other test sets (``study.test_sets``, family transfer): loading and the
in-distribution versus test-set table."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fwi_attn.layout import BASELINE, RUN, TRANSFER_PREFIX, baseline_dir, run_dir
from fwi_attn.results.study import ReportError, Study, read_json, run_identity

#: Depth bands of the bias-with-depth figures: the top, middle and bottom third of the rows.
DEPTH_BANDS = ("top", "middle", "bottom")


@dataclass
class TestSetResults:
    """One test set's results (``<study>/testsets/<name>/``).

    Attributes:
        name: the set's name (``transfer-<family>`` for a family-transfer set).
        metrics: ``{(variant, seed): metrics.json}`` of the runs scored on it.
        mean: the mean model's metrics.json on it, or None.
        compare: ``compare_sets.json`` (the training split against the set), or None.
    """

    __test__ = False  # not a pytest test class

    name: str
    metrics: dict[tuple[str, int], dict]
    mean: dict | None
    compare: dict | None
    dir: Path


def load_test_sets(study: Study) -> dict[str, TestSetResults]:
    """The results of every test set the study's config names (``study.test_sets``, then the
    family-transfer sets), in that order; a set without any scored run is left out."""
    from fwi_attn.layout import test_set_names, test_set_results

    out = {}
    for name in test_set_names(study.config.get("study", {})):
        root = test_set_results(study.dir, name)
        metrics = {}
        for path in sorted(root.glob(f"*/seed*/{RUN.metrics}")):
            m = read_json(path)
            if m.get("dataset") != name:
                raise ReportError(f"{path} holds results on {m.get('dataset')!r}, not on the test set {name!r}; "
                                  f"re-evaluate with --test-set {name}=FOLDER")
            metrics[run_identity(path, m)] = m
        if not metrics:
            continue
        mean_path = baseline_dir(root) / RUN.metrics
        mean = read_json(mean_path) if mean_path.exists() else None
        compare = read_json(root / "compare_sets.json") if (root / "compare_sets.json").exists() else None
        out[name] = TestSetResults(name, metrics, mean, compare, root)
    return out


def prediction_summary(paths: list[Path], salt_threshold: float) -> dict:
    """Salt area and depth bias of predictions files (pooled over every cell of every file).

    Returns ``{"salt_area_pred", "salt_area_true"}`` (fractions of the cells above
    ``salt_threshold``) and ``{"bias_<band>"}`` for :data:`DEPTH_BANDS`: the mean of prediction
    minus truth (m/s) over the cells of that third of the depth rows.
    """
    from fwi_attn.io.predictions import read_predictions

    pred_salt = true_salt = cells = 0
    bias = np.zeros(len(DEPTH_BANDS))
    band_cells = np.zeros(len(DEPTH_BANDS))
    for path in paths:
        p = read_predictions(path)
        pred, true = p.prediction.astype(np.float64), p.target.astype(np.float64)
        pred_salt += int((pred > salt_threshold).sum())
        true_salt += int((true > salt_threshold).sum())
        cells += true.size
        for k, rows in enumerate(np.array_split(np.arange(true.shape[1]), len(DEPTH_BANDS))):
            bias[k] += float((pred[:, rows] - true[:, rows]).sum())
            band_cells[k] += true[:, rows].size
    out = {"salt_area_pred": pred_salt / cells, "salt_area_true": true_salt / cells}
    out.update({f"bias_{b}": float(bias[k] / band_cells[k]) for k, b in enumerate(DEPTH_BANDS)})
    return out


def generalisation_table(study: Study, sets: dict[str, TestSetResults] | None = None,
                         salt_threshold: float | None = None) -> list[dict]:
    """In-distribution (the study's test split) versus each test set, per variant and for the mean model.

    Each row: ``variant, set, n_seeds, n_samples``; ``mae_ms`` and ``mae`` (metrics.json's
    ``pooled``: MAE over every cell of the set, mean over seeds); ``ratio_to_mean`` (that MAE over
    the mean model's pooled MAE on the same set); ``salt_iou`` (mean over samples, then seeds);
    and, for networks, :func:`prediction_summary` over the seeds' predictions files.
    """
    sets = load_test_sets(study) if sets is None else sets
    threshold = salt_threshold if salt_threshold is not None else \
        study.config.get("evaluate", {}).get("salt_threshold", 4200.0)
    sources = [("test", study.metrics, study.mean, study.dir)]
    sources += [(name, r.metrics, r.mean, r.dir) for name, r in sets.items()]
    rows = []
    for variant in [*study.variants, BASELINE]:
        for name, metrics, mean, root in sources:
            if variant == BASELINE:
                runs, files = ([mean] if mean is not None else []), []
            else:
                seeds = sorted(s for v, s in metrics if v == variant)
                runs = [metrics[(variant, s)] for s in seeds]
                files = [run_dir(root, variant, s) / RUN.predictions for s in seeds]
            if not runs:
                continue
            row = {"variant": variant, "set": name, "n_seeds": 0 if variant == BASELINE else len(runs),
                   "n_samples": runs[0].get("n_samples"),
                   "mae_ms": float(np.mean([r["pooled"]["mae_ms"] for r in runs])),
                   "mae": float(np.mean([r["pooled"]["mae"] for r in runs])),
                   "salt_iou": _nan_mean([r["mean"].get("salt_iou") for r in runs])}
            row["ratio_to_mean"] = row["mae"] / mean["pooled"]["mae"] if mean is not None else None
            if files and all(f.exists() for f in files):
                row.update(prediction_summary(files, threshold))
            rows.append(row)
    return rows


def _nan_mean(values) -> float | None:
    v = np.asarray([x for x in values if x is not None], dtype=float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else None


def _num(x, fmt: str) -> str:
    return "" if x is None or not np.isfinite(x) else format(x, fmt)


def generalisation_markdown(rows: list[dict]) -> str:
    """The in-distribution versus test-set table of :func:`fwi_attn.results.generalisation.generalisation_table`."""
    lines = ["| variant | set | samples | MAE, pooled over all cells (m/s) | ratio to mean model | salt IoU | "
             "salt area pred / true (% of cells) | bias top / middle / bottom (m/s) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        area = (f"{100 * r['salt_area_pred']:.1f} / {100 * r['salt_area_true']:.1f}" if "salt_area_pred" in r else "")
        bias = " / ".join(f"{r[f'bias_{b}']:+.0f}" for b in DEPTH_BANDS) if "bias_top" in r else ""
        lines.append(f"| {r['variant']} | {r['set']} | {r['n_samples']} | {_num(r['mae_ms'], '.1f')} | "
                     f"{_num(r['ratio_to_mean'], '.2f')} | {_num(r['salt_iou'], '.3f')} | {area} | {bias} |")
    return "\n".join(lines) + "\n"


def transfer_markdown(rows: list[dict], study: Study) -> str:
    """Train-on-A / test-on-B: rows are variants (and the mean model), columns the test families."""
    config = study.config
    dataset = config.get("study", {}).get("dataset", "")
    family = config.get("datasets", {}).get(dataset, {}).get("family", dataset)
    columns = ["test", *dict.fromkeys(r["set"] for r in rows if r["set"].startswith(TRANSFER_PREFIX))]
    if len(columns) == 1:
        return ""
    names = [f"{family} (in-distribution)", *(c[len(TRANSFER_PREFIX):] for c in columns[1:])]
    cell = {(r["variant"], r["set"]): r for r in rows}
    lines = [f"Trained on `{family}` (dataset `{dataset}`); tested on each family's models with the same survey. "
             "Each cell: MAE pooled over all cells of that family's test set (m/s, mean over seeds) and, in "
             "brackets, its ratio to the mean model on the same set.\n",
             "| trained on " + family + " | " + " | ".join(f"test: {n}" for n in names) + " |",
             "|---|" + "---:|" * len(names)]
    for variant in dict.fromkeys(r["variant"] for r in rows):
        cells = []
        for c in columns:
            r = cell.get((variant, c))
            cells.append("" if r is None else f"{_num(r['mae_ms'], '.1f')} ({_num(r['ratio_to_mean'], '.2f')})")
        lines.append(f"| {variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def distances_markdown(sets: dict[str, TestSetResults]) -> str:
    """The compare-sets distances of the training split to each set."""
    found = {n: r.compare for n, r in sets.items() if r.compare}
    if not found:
        return ""
    units = next(iter(found.values()))["units"]
    lines = ["`fwi-attn compare-sets` of the training split against each set (`compare_sets.json`): Wasserstein "
             "distances of the per-cell velocity, per-model salt fraction, salt-top depth, salt-body area and "
             "bodies per model, and the mean absolute difference of the mean velocity-depth profiles.\n",
             f"| set | velocity ({units['velocity']}) | depth profile ({units['depth_profile']}) | salt fraction | "
             f"salt top depth ({units['salt_top_depth']}) | body area ({units['body_area']}) | bodies per model | "
             "models with salt, train / set |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, c in found.items():
        st = c["statistics"]

        def w(key):
            d = st[key]["wasserstein"]
            return "n/a" if d is None else f"{d:.4g}"

        lines.append(f"| {name} | {w('velocity')} | {st['depth_profile']['mean_abs']:.4g} | {w('salt_fraction')} | "
                     f"{w('salt_top_depth')} | {w('body_area')} | {w('bodies_per_model')} | "
                     f"{st['with_salt']['a']:.2f} / {st['with_salt']['b']:.2f} |")
    return "\n".join(lines) + "\n"
