"""What each workflow job asks a scheduler for: memory and run time estimated from the study's
survey, dataset and network size, with headroom. Free of heavy imports (the Snakefile calls it
for every parse, also inside each SLURM job).

The estimates are upper bounds of the arrays a job holds at once, times ``HEADROOM``, plus a
base: ``BASE_MB`` for the jobs that run torch (the interpreter with torch and deepwave: 333 MB
resident, measured), ``SETUP_MB`` for the light jobs that load a config or a shard,
``LIGHT_MB`` for those that read result files and draw, torch-free (``CUDA_MB`` more on
a CUDA study's torch jobs, for the CUDA context in host memory). ``make rehearse`` checks every
request against the peak its job reached at the paper preset's size (docs/benchmarks.md). Run times come from throughputs measured on one CPU thread
(docs/benchmarks.md: ~2e8 wavefield cell-updates/s for the simulator at accuracy 8, ~4e6
input values/s for training the slowest variant), halved for headroom, divided by the job's
threads, or by ``GPU_SPEEDUP`` on a CUDA study; every job gets at least ``MIN_RUNTIME``
minutes. A cluster profile's ``set-resources`` still overrides any of them per rule.
"""
from __future__ import annotations

import math

from fwi_attn.catalogue import TRAIN_COST

BASE_MB = 640            # a torch job: interpreter + torch/deepwave (333 MB measured), HDF5 buffers
LIGHT_MB = 256           # a job that reads results and draws figures, torch-free (118-251 MB measured at the paper size)
SETUP_MB = 512           # study_config, select, evaluate_mean: a config, shards or a checkpoint (331-335 MB measured)
CUDA_MB = 1024           # host memory of a CUDA context (driver, cuBLAS/cuDNN); not measured here
HEADROOM = 1.5           # on every estimated array size
MIN_RUNTIME = 10         # minutes: queueing a job, starting Python, imports, writing outputs
CELL_UPDATES_PER_S = 1e8  # simulator, per CPU thread (measured ~2e8 at accuracy 8; halved)
TRAIN_VALUES_PER_S = 2e6  # training, input values (shot x time x receiver) per second per thread
# CUDA over one CPU thread, kept low (any GPU, any variant): simulation, networks.
GPU_SPEEDUP = {"simulate": 50.0, "network": 200.0}
FLOAT = 4                 # bytes of a float32
COMPRESSED_BYTES = 1.1    # bytes a stored wavefield value takes with deepwave's 8-bit storage compression
# Rules whose command runs torch on the study's device (the others read result files).
TORCH_RULES = ("generate", "train", "evaluate", "physics", "refine")
# Light rules that load a config, a shard or a checkpoint's record rather than result files.
SETUP_RULES = ("study_config", "select", "evaluate_mean")


def train_cost(variant: str) -> float:
    """A variant's training time relative to the plain UNet's (:data:`fwi_attn.catalogue.TRAIN_COST`; 1 if
    unlisted): the workflow starts the costlier runs of a seed first, so that the last jobs to end are short."""
    return TRAIN_COST.get(variant, 1.0)


def caches_samples(cfg, nbytes: float) -> bool:
    """Whether training keeps the normalised train and val samples (``nbytes`` together) in
    memory after their first epoch: when they fit in ``train.cache_mb``. Here, beside the
    memory estimate that counts them, because the workflow's parse may not import torch."""
    return nbytes <= cfg.train.cache_mb * 2**20


def _mb(nbytes: float, base: float = BASE_MB) -> int:
    """Memory request in MB: the base, plus the arrays with headroom, rounded up to 100 MB."""
    return int(math.ceil((base + HEADROOM * nbytes / 2**20) / 100.0) * 100)


def _minutes(seconds: float) -> int:
    """Run-time request in minutes: twice the estimate, at least MIN_RUNTIME."""
    return max(MIN_RUNTIME, int(math.ceil(2 * seconds / 60.0)))


def _sizes(cfg) -> dict:
    s = cfg.survey
    ds = cfg.datasets[cfg.study.dataset]
    padded = (s.nz + 2 * s.pml_width) * (s.nx + 2 * s.pml_width)
    return dict(
        gather=s.n_shots * s.nt * s.n_receivers * FLOAT,          # one sample's gathers, bytes
        grid=s.nz * s.nx * FLOAT,                                 # one velocity model, bytes
        wavefield=s.n_shots * padded * FLOAT,                     # one model's wavefields, one buffer
        cell_updates=s.n_shots * s.nt * padded,                   # one simulation of one model
        # One model's wavefield history for its gradient: every shot, every step, on the grid that
        # deepwave pads by the PML and half the stencil (accuracy) on each side.
        history_values=s.n_shots * s.nt * (s.nz + 2 * s.pml_width + s.accuracy) * (s.nx + 2 * s.pml_width + s.accuracy),
        samples=ds.samples, shard=min(ds.shard_size, max(ds.samples.values())),
    )


def train_processes(cfg) -> int:
    """Torchrun processes per training run (``train.processes``; 1 where the key is absent)."""
    return int(cfg.train.to_dict().get("processes", 1))


def job_resources(cfg, rule: str) -> dict:
    """``{"mem_mb", "runtime"}`` (MB, minutes) for one job of workflow rule ``rule``, plus
    ``"gpu"`` (a count) for the torch rules (``TORCH_RULES``) of a study with ``study.device:
    cuda``: one GPU, or one per torchrun process for ``train``. ``auto`` asks for none, since
    it cannot know in advance whether a GPU will be there (it uses one if present).

    ``cfg`` is a :class:`fwi_attn.config.Config`. Arrays that live on the GPU in a CUDA study
    (wavefields, activations) are not counted in the host memory ``mem_mb``.
    """
    z = _sizes(cfg)
    gpu = cfg.study.device == "cuda"
    on_host = 0.0 if gpu else 1.0
    cpus = float(max(1, cfg.study.threads))
    sim_speed = GPU_SPEEDUP["simulate"] if gpu else cpus
    net_speed = GPU_SPEEDUP["network"] if gpu else cpus
    s, m, t = cfg.survey, cfg.model, cfg.train
    n_train, n_val, n_test = z["samples"]["train"], z["samples"]["val"], z["samples"]["test"]
    batch = t.batch_size
    eval_batch = cfg.evaluate.batch_size or batch
    # Feature maps of a UNet over the grid: ~2 x width channels summed over the levels, a few
    # tensors per level kept for the backward pass.
    features = 24 * m.width * z["grid"]
    if rule == "generate":
        # The whole shard's gathers (and their transposed copy for the file), plus one call's
        # wavefields (deepwave keeps ~6 buffers) and records.
        chunk = min(s.models_per_call, z["shard"])
        nbytes = (2 * z["shard"] * z["gather"] + on_host * chunk * (6 * z["wavefield"] + 2 * z["gather"]))
        seconds = z["shard"] * z["cell_updates"] / (CELL_UPDATES_PER_S * sim_speed)
    elif rule == "stats":
        nbytes = z["shard"] * z["gather"]  # one shard at a time
        seconds = n_train * z["gather"] / FLOAT / 2e7
    elif rule == "train":
        # Under torchrun each of the N processes holds its own batch and splits the epoch. Fitted
        # at the paper's size on a CPU (make rehearse, batch 2): UNets peak at 1.1-1.2 GB,
        # InversionNet (its encoder runs on the gathers) at 2.2 GB; this asks for 2.8 GB.
        procs = train_processes(cfg)
        nbytes = procs * (on_host * batch * (4 * z["gather"] + features) + 2 * batch * z["gather"])
        nbytes += (procs - 1) * (BASE_MB + (CUDA_MB if gpu else 0)) * 2**20 / HEADROOM
        cached = (n_train + n_val) * (z["gather"] + z["grid"])
        if caches_samples(cfg, cached):  # every process holds the whole split
            nbytes += procs * max(1, t.num_workers) * cached
        values = (n_train + n_val) * t.epochs * z["gather"] / FLOAT * max(1.0, m.width / 16.0)
        seconds = values / (TRAIN_VALUES_PER_S * net_speed * procs)
    elif rule == "evaluate":
        # No gradients: one batch's inputs and features (a split smaller than a batch is one
        # batch). At the paper's size, one test sample: 546 MB peak (/usr/bin/time), 1,400 asked.
        eval_batch = min(eval_batch, n_test)
        nbytes = (on_host * eval_batch * (2 * z["gather"] + features) + 2 * eval_batch * z["gather"]
                  + 4 * n_test * z["grid"])
        seconds = n_test * z["gather"] / FLOAT / (10 * TRAIN_VALUES_PER_S * net_speed)
    elif rule == "evaluate_mean":
        # The mean model runs no network: the train and test models, not their gathers.
        nbytes = 4 * (n_test + n_train) * z["grid"]
        seconds = (n_test + n_train) * z["grid"] / FLOAT / 1e6
    elif rule == "physics":
        # One job per variant checks its result runs (one per seed of the compared stage): their
        # predictions, plus the shared true and mean models.
        n = cfg.physics.samples
        runs = len(cfg.study.confirm.seeds or cfg.study.seeds)
        nbytes = (runs + 3) * n * z["gather"] + on_host * s.models_per_call * 6 * z["wavefield"]
        seconds = (runs + 1) * (n + 1) * z["cell_updates"] / (CELL_UPDATES_PER_S * sim_speed)
    elif rule == "refine":
        r = cfg.physics.refine
        # Backpropagation through the simulation keeps every time step's wavefield of one model's
        # shots. On a CPU, fwi_attn.physics.fwi.plan_memory stores it 8-bit compressed (deepwave's
        # storage_compression, ~1.07 bytes a value) whenever the float32 history exceeds half the
        # free memory, as it does wherever a node has about this request free (at the paper's size:
        # 5.0 GiB compressed, 18.8 GiB not). On a CUDA study the history is on the GPU.
        nbytes = 3 * r.samples * z["gather"] + on_host * (COMPRESSED_BYTES * z["history_values"] + 6 * z["wavefield"])
        stages = max(1, len(r.frequencies))
        # Each iteration a forward and a backward pass (~3 simulations); each stage a forward pass
        # before and after to measure the misfit.
        seconds = r.samples * stages * (3 * r.iterations + 2) * z["cell_updates"] / (CELL_UPDATES_PER_S * sim_speed)
    elif rule == "figures_compare":
        # Each variant's showcase gathers (observed, re-simulated, mean model) drawn into the PNG
        # and the vector formats: 1,045 MB peak at the paper's size.
        runs = len(cfg.study.variants) * len(cfg.study.seeds)
        nbytes = (3 * len(cfg.study.variants) * n_test * z["grid"] + 2 * len(cfg.study.variants) * z["gather"]
                  + runs * 2**20 + 2**28)  # and matplotlib's figures in flight
        seconds = 30 + 10 * runs
    elif rule == "figures_run":
        nbytes = 3 * n_test * z["grid"]
        seconds = 30
    elif rule == "preview":  # one shard's first models and their gathers
        nbytes = 2 * z["gather"] + 3 * z["grid"]
        seconds = 60
    else:  # study_config, select, report, notebook, compare_testset: configs, JSON results, figures
        nbytes = 3 * z["grid"]
        seconds = 60
    torch_job = rule in TORCH_RULES
    base = (BASE_MB + (CUDA_MB if gpu else 0)) if torch_job else SETUP_MB if rule in SETUP_RULES else LIGHT_MB
    out = {"mem_mb": _mb(nbytes, base), "runtime": _minutes(seconds)}
    if gpu and rule in TORCH_RULES:
        out["gpu"] = train_processes(cfg) if rule == "train" else 1
    return out
