# Helpers shared by every stage: the validated config, paths, and input functions.
# Rules only call `fwi-attn` sub-commands; everything they need to know comes from here.
# Nothing here writes a file: the workflow is parsed for every dry run and every job, also while
# another run of the same study is going on.
import json
import os
import re
import shlex
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.settings.types import DeploymentMethod

from fwi_attn.checks import check_study
from fwi_attn.config import ConfigError, load_config
from fwi_attn.resources import job_resources, train_cost, train_processes
from fwi_attn.layout import (RUN, SHARD_GLOB, SPLITS, TRANSFER_PREFIX, baseline_dir, comparison_figure_paths,
                             run_dir as layout_run_dir, generalisation_figure_path, run_figure_paths, run_pattern,
                             selection_path, shard_sizes, split_shards, test_set_dir, test_set_names, test_set_results)
from fwi_attn.catalogue import BASELINES, CONTROLS
from fwi_attn.results.design import control_width, read_selection
from fwi_attn.data.testset import TestSetError, TestSetOptions, model_files

# The schema check above filled the defaults; load_config adds the checks a schema cannot
# express (vmin < vmax, sources inside the grid, record length) and names the bad key.
try:
    CFG = load_config(dict(config))
    check_study(CFG)  # test-set folders on disk: the same check as `fwi-attn check-config`
except ConfigError as e:
    raise WorkflowError(f"invalid config: {e}")

STUDY_CFG = CFG.study
VARIANTS = list(STUDY_CFG.variants)
SEEDS = list(STUDY_CFG.seeds)
# A two-stage study (docs/study.md): the runs on SEEDS screen every variant on the validation
# split; `select` (a checkpoint) picks the confirmation arms, trained on CONFIRM_SEEDS and the only
# runs evaluated, checked and compared. A one-stage study evaluates and compares every run.
CONFIRM_SEEDS = list(STUDY_CFG.confirm.seeds)
CONFIRM = STUDY_CFG.confirm if CONFIRM_SEEDS else None
DATASET = STUDY_CFG.dataset
THREADS = STUDY_CFG.threads

REPO = Path(workflow.basedir)
DATA = Path(STUDY_CFG.data_dir) / DATASET
STUDY = Path(STUDY_CFG.results_dir) / STUDY_CFG.name
LOGS = STUDY / "logs"
BENCH = STUDY / "benchmarks"
REPORT = STUDY / "report"
SELECTION = selection_path(STUDY)

# Jobs run `fwi-attn` and `python` from the interpreter running Snakemake (the project's venv),
# put first on PATH, so the venv need not be activated. With --software-deployment-method conda
# each rule's conda environment (workflows/envs/fwi-attn.yaml) provides them instead.
CONDA_ENV = "../envs/fwi-attn.yaml"
if DeploymentMethod.CONDA not in workflow.deployment_settings.deployment_method:
    shell.prefix(f'set -euo pipefail; export PATH="{Path(sys.executable).parent}:$PATH"; ')

# Each command gets the whole default-filled config inline, from this process's environment
# (`--config "$FWI_ATTN_STUDY_CONFIG"`), never from a shared file: a dry run or another run
# with another config cannot change what a running job reads, so every job runs with exactly
# the config of the invocation whose params Snakemake recorded. Each rule lists the sections
# it depends on as params, and the params rerun trigger re-runs exactly the jobs whose sections
# changed. `config.yaml` in the study folder is a record of that config, written by a job.
CONFIG_JSON = json.dumps(CFG.to_dict(), sort_keys=True)
os.environ.update(FWI_ATTN_STUDY_CONFIG=CONFIG_JSON)  # set for the jobs, not read from the user
STUDY_CONFIG = STUDY / "config.yaml"


def sections(*keys):
    """The config sections (dotted keys) a job depends on, as canonical JSON for params."""
    out = {}
    for key in keys:
        value = CFG.to_dict()
        for part in key.split("."):
            value = value[part]
        out[key] = value
    return json.dumps(out, sort_keys=True)


TRAIN_PROCESSES = train_processes(CFG)


# Scheduling: Snakemake starts the ready job of the highest priority first, and training is most
# of a study's time. The jobs that turn finished runs into results (evaluation, physics, the
# comparison, the report) go first. Training goes seed by seed, the costlier variants of a seed
# first (longest job first), so that one seed's physics job runs beside the next seed's training
# and the last runs to end are short ones. The per-run figures and the dataset preview wait for a
# free core: at the end of a study they fill the second one beside the last physics job and the
# comparison, which would otherwise leave it idle.
PRIORITY_RESULTS = 1000
PRIORITY_FILL = 0
# A two-stage study's screening runs are scored on the test split for their attention maps only
# (descriptive): after every training job, before the per-run figures.
PRIORITY_SCREENING = 50


def train_priority(wildcards):
    seed = int(wildcards.seed)
    # A run asked for by its path, of a seed the config does not list, goes last.
    every = SEEDS + CONFIRM_SEEDS
    rank = len(every) - every.index(seed) if seed in every else 0
    return 100 + 10 * rank + train_cost(wildcards.variant)


def shard_priority(wildcards):
    """Largest shards first (they end the data stage), above every other job: training needs them."""
    ds = CFG.datasets[DATASET]
    sizes = shard_sizes(ds.samples[wildcards.split], ds.shard_size)
    i = int(wildcards.shard)
    return PRIORITY_RESULTS + (sizes[i] if i < len(sizes) else 0)


# On a cluster, the short scoring jobs (a run or the mean model on the test split or a test set,
# a test set against the training models) go in one group: with the profile's group-components,
# several of them share one cluster job and one Snakemake start-up inside it. Each takes the one
# `score_slots` the profile gives a cluster job (a local-scope resource), so a group runs them
# one after another with one job's threads, memory and GPU, not their sum. A local run ignores groups.
SCORE_GROUP = "score"


def scoring(rule):
    """``estimated(rule)`` plus the one score slot of the SCORE_GROUP's jobs."""
    return {**estimated(rule), "score_slots": 1}


def estimated(rule):
    """A job's memory (mem_mb), run time (runtime, minutes) and, on a CUDA study's torch rules,
    GPUs (gpu), estimated from the study's size (fwi_attn.resources); a cluster profile's
    set-resources overrides them per rule."""
    return job_resources(CFG, rule)


wildcard_constraints:
    split="|".join(SPLITS),
    shard=r"\d{4}",
    variant="|".join(VARIANTS + [c for c in CONTROLS if c not in VARIANTS]),
    seed=r"\d+",


def shards(split):
    """Every shard path of one split of the study's dataset."""
    return [str(p) for p in split_shards(CFG, split)]


def remove_stale_shards():
    """Delete generated shards of the study's dataset that the config no longer defines (left
    by a larger `samples.<split>`): readers refuse a split folder holding them. Runs at the start
    of a real run, under Snakemake's lock, never while the workflow is parsed."""
    for split in SPLITS:
        keep = set(shards(split))
        for path in sorted((DATA / split).glob(SHARD_GLOB)):
            if str(path) not in keep:
                path.unlink()
                print(f"removed stale shard {path} (not in datasets.{DATASET}.samples.{split})", file=sys.stderr)


def run_dir(variant, seed):
    return layout_run_dir(STUDY, variant, seed)


def runs():
    """The runs on study.seeds: every run of a one-stage study, the screening of a two-stage one."""
    return [(v, s) for v in VARIANTS for s in SEEDS]


def selection():
    """The confirmation stage's record (selection.json), once the `select` checkpoint has run."""
    return read_selection(checkpoints.select.get().output[0])


def result_runs():
    """The runs whose test results the report compares: the confirmation arms on CONFIRM_SEEDS
    (known once `select` has run), or every run of a one-stage study."""
    if not CONFIRM:
        return runs()
    return [(a, s) for a in selection()["arms"] for s in CONFIRM_SEEDS]


def run_files(name, seeds=None):
    """``name`` (e.g. ``RUN.history``) of every run on study.seeds, or of the given seeds only."""
    return [str(run_dir(v, s) / name) for v, s in runs() if seeds is None or s in seeds]


def result_files(name, first_seed=False):
    """An input function: ``name`` of every result run (of each arm's first seed only)."""

    def files(wildcards):
        chosen = result_runs()
        if first_seed:
            chosen = [(v, s) for v, s in chosen if s == min(t for u, t in chosen if u == v)]
        return [str(run_dir(v, s) / name) for v, s in chosen]

    return files


# Physics re-simulates each result run's predictions: one job per variant over its seeds (the
# simulator loads once per job), with the seeds of the stage whose results are compared.
PHYSICS_SEEDS = CONFIRM_SEEDS or SEEDS


def physics_files(name):
    """``name`` of every seed's run of the rule's ``{variant}``: one physics job per variant."""
    return [f"{STUDY}/{{variant}}/seed{s}/{name}" for s in PHYSICS_SEEDS]


def train_width(wildcards):
    """`--width N` for the parameter-matched control, from selection.json; else nothing."""
    if wildcards.variant != "none_wide":
        return ""
    width = control_width(read_selection(SELECTION), "none_wide")
    if width is None:
        raise WorkflowError(f"{SELECTION} has no width for none_wide: rerun `select`")
    return f"--width {width}"


def train_inputs(wildcards):
    """A confirmation run depends on the selection that asked for it."""
    return [str(SELECTION)] if CONFIRM and int(wildcards.seed) in CONFIRM_SEEDS else []


def run_figures(variant, seed):
    return [str(p) for p in run_figure_paths(STUDY, variant, int(seed)).values()]


def result_figures(wildcards):
    """The per-run figures of each result arm's first run (the report's appendix; `fwi-attn
    figures --variant V --seed K`, or the run's figure path as a target, draws any other run's)."""
    firsts = {}
    for v, s in result_runs():
        firsts.setdefault(v, s)
    return [f for v, s in firsts.items() for f in run_figures(v, s)]


def comparison_figures():
    return {k: str(p) for k, p in comparison_figure_paths(STUDY).items()}


def comparison_output(name, caption):
    """A comparison figure marked for `snakemake --report`, with its caption file."""
    return report(comparison_figures()[name], caption=f"../report/{caption}.rst", category="2. Comparison")


def out_dir(wildcards, output):
    """The folder of a job's first output: where its `fwi-attn ... --out DIR` writes."""
    return str(Path(output[0]).parent)


def refine_files(wildcards):
    # FWI refinement is optional: when it is off, nothing asks for refine.json.
    return result_files(RUN.refine)(wildcards) if CFG.physics.refine.enabled else []


# Test sets (study.test_sets: model files; study.transfer_families: drawn from another family of
# the generator): each is built once with `fwi-attn testset` and scored by every run.
TEST_SETS = {s.name: s for s in STUDY_CFG.test_sets}
TRANSFER_SETS = {TRANSFER_PREFIX + f: f for f in STUDY_CFG.transfer_families}
SET_NAMES = test_set_names(STUDY_CFG)
TRANSFER_SAMPLES = STUDY_CFG.transfer_samples or CFG.datasets[DATASET].samples["test"]


def _model_files(entry):
    try:
        return [str(p) for p in model_files([entry.path] if isinstance(entry.path, str) else list(entry.path))]
    except TestSetError as e:
        raise WorkflowError(f"invalid config: study.test_sets {entry.name}: {e}")


# Listed once, while parsing: a missing folder stops the workflow before any job.
TEST_SET_MODELS = {name: _model_files(entry) for name, entry in TEST_SETS.items()}


def test_set_models(wildcards):
    """The model files of a study.test_sets entry (none for a family-transfer set)."""
    return TEST_SET_MODELS.get(wildcards.testset, [])


def testset_options(wildcards):
    """The `fwi-attn testset` arguments of one set, from its config entry."""
    name = wildcards.testset
    if name in TRANSFER_SETS:
        return f"--family {TRANSFER_SETS[name]} --samples {TRANSFER_SAMPLES} --seed {CFG.datasets[DATASET].seed}"
    return " ".join(shlex.quote(a) for a in TestSetOptions.from_entry(TEST_SETS[name]).to_args())


def testset_deps(wildcards):
    """What one set's shards depend on: the survey, the geology, and its own entry (or seed)."""
    name = wildcards.testset
    own = TEST_SETS[name].to_dict() if name in TEST_SETS else {"samples": TRANSFER_SAMPLES,
                                                                "seed": CFG.datasets[DATASET].seed}
    return sections("survey", "geology", "evaluate.salt_threshold") + json.dumps(own, sort_keys=True)


def test_set_data(name):
    return test_set_dir(CFG, name)


def test_set_folder(wildcards):
    """The folder of one set's shards (`fwi-attn testset --out`, `evaluate --test-set NAME=FOLDER`)."""
    return str(test_set_data(wildcards.testset))


def split_folder(wildcards, input):
    """The folder of a job's `train` shards (`fwi-attn compare-sets` reads a whole split)."""
    return str(Path(input.train[0]).parent)


#: What `fwi-attn evaluate` writes into a run's folder (on the test split or a test set).
EVALUATE_FILES = (RUN.metrics, RUN.predictions, RUN.attention, RUN.attention_salt)

#: The variants with attention maps: every one but the plain UNet and the baselines.
ATTENTION_VARIANTS = [v for v in VARIANTS if v != "none" and v not in BASELINES]


def screening_files(wildcards=None):
    """A two-stage study's screening runs of the attention variants scored on the test split, so
    that every attention variant's maps are scored against salt (attention_salt.json), not only
    the confirmed arms'. Descriptive: the confirmatory comparison reads only the result runs."""
    if not CONFIRM:
        return []
    return [str(run_dir(v, s) / f) for v, s in runs() if v in ATTENTION_VARIANTS for f in EVALUATE_FILES]


def evaluate_priority(wildcards):
    """A result run's evaluation before new training; a screening run's after it (see PRIORITY_SCREENING)."""
    return PRIORITY_SCREENING if CONFIRM and int(wildcards.seed) in SEEDS else PRIORITY_RESULTS


def test_set_files(name):
    """Every result file of one test set (each result run's and the mean model's scores, the comparison)."""
    root = test_set_results(STUDY, name)
    out = [str(baseline_dir(root) / RUN.metrics), str(root / "compare_sets.json"), str(root / "compare_sets.png")]
    for v, s in result_runs():
        out += [str(layout_run_dir(root, v, s) / f) for f in EVALUATE_FILES]
    return out


def generalisation_inputs(wildcards=None):
    return [f for name in SET_NAMES for f in test_set_files(name)]


def generalisation_figure():
    """The report's true-versus-predicted figure on the test sets (none without test sets)."""
    return [str(generalisation_figure_path(STUDY))] if SET_NAMES else []


def study_outputs():
    # Every file the study keeps is a target, so deleting any of them re-creates it (Snakemake
    # would otherwise treat a deleted intermediate as expendable while its dependents exist).
    # These are known before any job runs; result_outputs names the rest.
    return [
        str(STUDY_CONFIG),
        str(DATA / "stats.json"),
        str(STUDY / "figures" / "dataset_preview.png"),
        str(baseline_dir(STUDY) / RUN.metrics),
        *run_files(RUN.model),
        *run_files(RUN.history),
        *([str(SELECTION)] if CONFIRM else []),
        *screening_files(),
        *[str(test_set_data(name) / "testset.json") for name in SET_NAMES],
    ]


def result_outputs(wildcards):
    """The result runs' files, their figures and the report (in a two-stage study, once `select` has run)."""
    result = result_runs()
    return [
        *[str(run_dir(v, s) / f) for v, s in result for f in RESULT_RUN_FILES],
        str(REPORT / "report.md"),
        str(REPORT / "report.html"),
        str(REPORT / "compare_attention.ipynb"),
        *refine_files(wildcards),
        *result_figures(wildcards),
        *comparison_figures().values(),
        *generalisation_inputs(),
        *generalisation_figure(),
    ]


#: What each result run keeps beside its training files.
RESULT_RUN_FILES = (RUN.model, RUN.history, *EVALUATE_FILES, RUN.physics, RUN.physics_figure, RUN.gathers)
