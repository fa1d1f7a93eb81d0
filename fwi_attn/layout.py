"""Every path of a study, in one place and free of heavy imports.

The Snakefile, the commands and the readers all name files through these functions, so a
file is always where its reader looks, and knowing a file name never costs an import of
torch, deepwave or matplotlib (Snakemake parses its workflow for every job and dry run)::

    <data_dir>/<dataset>/<split>/shard-NNNN.h5      generate
    <data_dir>/<dataset>/stats.json                 stats (train split only)
    <results_dir>/<name>/config.yaml                the study's resolved config, as run
    <results_dir>/<name>/<variant>/seed<k>/         train, evaluate, physics (one run)
    <results_dir>/<name>/mean/metrics.json          the mean-model baseline
    <results_dir>/<name>/selection.json             select: the confirmation stage's arms (two-stage studies)
    <results_dir>/<name>/figures/                   figures
    <results_dir>/<name>/report/                    report
    <data_dir>/<dataset>/testsets/<set>/            testset (study.test_sets, study.transfer_families)
    <results_dir>/<name>/testsets/<set>/            each run and the mean model scored on it, compare_sets.json

``cfg`` is a :class:`fwi_attn.config.Config` (anything with ``cfg.study.data_dir`` etc.).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

# Family-transfer sets (``study.transfer_families``) are named ``transfer-<family>``; the config checks the names.
from fwi_attn.config import TRANSFER_PREFIX

SPLITS = ("train", "val", "test")
SHARD_GLOB = "shard-[0-9][0-9][0-9][0-9].h5"


def shard_sizes(n_samples: int, shard_size: int) -> list[int]:
    """Samples in each shard of a split: full shards, then the remainder."""
    full, rest = divmod(n_samples, shard_size)
    return [shard_size] * full + ([rest] if rest else [])


def shard_path(data_dir: str | os.PathLike, dataset: str, split: str, shard: int) -> Path:
    return Path(data_dir) / dataset / split / f"shard-{shard:04d}.h5"


def split_dir(cfg, dataset: str | None, split: str) -> Path:
    """``<data_dir>/<dataset>/<split>`` for a config (``dataset`` None: ``study.dataset``)."""
    return Path(cfg.study.data_dir) / (dataset or cfg.study.dataset) / split


def split_shards(cfg, split: str, dataset: str | None = None) -> list[Path]:
    """The shard paths that make up one split, exactly as the config defines it."""
    name = dataset or cfg.study.dataset
    ds = cfg.datasets[name]
    n = len(shard_sizes(ds.samples[split], ds.shard_size))
    return [shard_path(cfg.study.data_dir, name, split, i) for i in range(n)]


def default_stats_path(cfg, dataset: str | None = None) -> Path:
    """``<data_dir>/<dataset>/stats.json``."""
    return Path(cfg.study.data_dir) / (dataset or cfg.study.dataset) / "stats.json"


def study_dir(cfg) -> Path:
    """``<results_dir>/<name>`` of a loaded config."""
    return Path(cfg.study.results_dir) / cfg.study.name


@dataclass(frozen=True)
class RunFiles:
    """The names of the files inside one run folder ``<variant>/seed<k>/`` (and the baseline's ``mean/``).

    Every reader, writer and rule names a run's file through :data:`RUN`; no other module spells them.
    """
    model: str = "model.pt"                   # train: the best checkpoint (lowest validation loss)
    last: str = "last.pt"                     # train: the resumable last-epoch checkpoint
    history: str = "history.csv"              # train: one row per epoch
    metrics: str = "metrics.json"             # evaluate: the test split's metrics
    predictions: str = "predictions.h5"       # evaluate: every test prediction
    attention: str = "attention.h5"           # evaluate: attention maps of a few test models
    attention_salt: str = "attention_salt.json"  # evaluate: each attention map scored against salt
    physics: str = "physics.json"             # physics: data misfits of re-simulated predictions
    physics_figure: str = "physics.png"
    gathers: str = "gathers.h5"               # physics: the re-simulated gathers
    refine: str = "refine.json"               # refine: FWI started from the predictions
    refined: str = "refined.npy"
    refine_figure: str = "refine.png"
    tensorboard: str = "tb"                   # train: TensorBoard event files (a folder)


#: The file names of a run; e.g. ``run_dir(study, "none", 0) / RUN.metrics``.
RUN = RunFiles()

#: The folder of the mean-model baseline, beside the variants' folders.
BASELINE = "mean"

#: A run folder relative to its study, as Snakemake wildcards.
RUN_PATTERN = "{variant}/seed{seed}"


def run_dir(study: str | os.PathLike, variant: str, seed: int) -> Path:
    """The folder of one (variant, seed) run."""
    return Path(study) / variant / f"seed{int(seed)}"


def baseline_dir(study: str | os.PathLike) -> Path:
    """``<study>/mean``: the mean-model baseline's metrics and predictions."""
    return Path(study) / BASELINE


def run_pattern(root: str | os.PathLike, name: str) -> str:
    """``<root>/{variant}/seed{seed}/<name>``: a run file as a Snakemake pattern (``name`` from :data:`RUN`)."""
    return f"{root}/{RUN_PATTERN}/{name}"


def parse_run_dir(folder: str | os.PathLike) -> tuple[str, int] | None:
    """``(variant, seed)`` that a folder ``.../<variant>/seed<k>`` names, or None for another name."""
    folder = Path(folder)
    name = folder.name
    if name.startswith("seed") and name[4:].isdigit():
        return folder.parent.name, int(name[4:])
    return None


def selection_path(study: str | os.PathLike) -> Path:
    """``selection.json`` of a two-stage study: what the screening selected for confirmation, and why."""
    return Path(study) / "selection.json"


def run_figure_paths(study: str | os.PathLike, variant: str, seed: int) -> dict:
    """Files ``fwi-attn figures --variant V --seed K`` writes: ``{"examples", "history"}``."""
    runs = Path(study) / "figures" / "runs"
    return {"examples": runs / f"{variant}-seed{seed}-examples.png",
            "history": runs / f"{variant}-seed{seed}-history.png"}


def comparison_figure_paths(study: str | os.PathLike) -> dict:
    """Files ``fwi-attn figures --compare`` writes (figures, and the table as CSV and markdown)."""
    d = Path(study) / "figures"
    return {"table_csv": d / "metrics_table.csv", "table_md": d / "metrics_table.md",
            "bars": d / "metrics_bars.png", "cost": d / "accuracy_vs_cost.png",
            "curves": d / "training_curves.png", "predictions": d / "predictions.png",
            "attention": d / "attention_maps.png", "gathers": d / "gathers.png",
            "physics": d / "physics_misfit.png", "attention_salt": d / "attention_salt_auc.png",
            "attention_iou": d / "attention_auc_vs_iou.png"}



def test_set_names(study) -> list[str]:
    """The names of a study's test sets: ``study.test_sets`` then ``transfer-<family>`` for each of
    ``study.transfer_families`` (``study`` is the config's ``study`` section, a Section or dict)."""
    sets = [s["name"] for s in study.get("test_sets") or []]
    return [*sets, *(TRANSFER_PREFIX + f for f in study.get("transfer_families") or [])]


def test_set_dir(cfg, name: str) -> Path:
    """``<data_dir>/<dataset>/testsets/<name>``: the shards and ``testset.json`` of one test set."""
    return Path(cfg.study.data_dir) / cfg.study.dataset / "testsets" / name


def test_set_results(study: str | os.PathLike, name: str) -> Path:
    """``<study>/testsets/<name>``: ``<variant>/seed<k>/``, ``mean/`` and ``compare_sets.json`` of one set."""
    return Path(study) / "testsets" / name


def generalisation_figure_path(study: str | os.PathLike) -> Path:
    """The report's figure of true versus predicted test-set windows (``fwi-attn report`` draws it)."""
    return Path(study) / "figures" / "generalisation.png"
