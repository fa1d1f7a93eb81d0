# Training: one job per (variant, seed). last.pt is written beside the outputs but not declared,
# so an interrupted or failed job does not have Snakemake delete it, and the re-run continues
# from it (`--resume auto`: only when it was made with the same settings and is unfinished).

# With train.processes > 1, torchrun starts that many training processes on the job's node
# (one GPU each on a CUDA study, see fwi_attn.resources.job_resources); otherwise the command is plain `fwi-attn`.
TRAIN_LAUNCH = (
    f"python -m fwi_attn.cli.torchrun --standalone --nproc_per_node={TRAIN_PROCESSES} -m fwi_attn.cli"
    if TRAIN_PROCESSES > 1
    else "fwi-attn"
)


rule train:
    input:
        train=shards("train"),
        val=shards("val"),
        stats=f"{DATA}/stats.json",
        selection=train_inputs,
    output:
        model=run_pattern(STUDY, RUN.model),
        history=run_pattern(STUDY, RUN.history),
    params:
        out=out_dir,
        width=train_width,
        deps=sections("survey", "model", "train", f"datasets.{DATASET}"),
    log:
        f"{LOGS}/train/{{variant}}-seed{{seed}}.log",
    benchmark:
        f"{BENCH}/train/{{variant}}-seed{{seed}}.tsv"
    threads: THREADS
    priority: train_priority
    resources:
        **estimated("train"),
    conda:
        CONDA_ENV
    shell:
        f"{TRAIN_LAUNCH} train --config \"$FWI_ATTN_STUDY_CONFIG\" --variant {{wildcards.variant}}"
        " --seed {wildcards.seed} --out {params.out} --stats {input.stats} {params.width} --resume auto --quiet"
        " > {log} 2>&1"


# Two-stage studies: the screening runs' validation MAE picks the confirmation arms, decided at
# run time (a checkpoint: the workflow then plans the confirmation runs it names).
checkpoint select:
    input:
        history=run_files(RUN.history),
        model=run_files(RUN.model),
    output:
        SELECTION,
    params:
        deps=sections("study", "model"),
    log:
        f"{LOGS}/select.log",
    benchmark:
        f"{BENCH}/select.tsv"
    priority: PRIORITY_RESULTS
    resources:
        **estimated("select"),
    conda:
        CONDA_ENV
    shell:
        "fwi-attn select --config \"$FWI_ATTN_STUDY_CONFIG\" --out {output} > {log} 2>&1"
