# The study's resolved config, kept beside its results as the record of what was run (jobs
# get the config inline; the report and the notebook read this file).
rule study_config:
    output:
        STUDY_CONFIG,
    params:
        deps=sections("study", "survey", "geology", "datasets", "normalize", "model", "train", "evaluate",
                      "physics"),
    log:
        f"{LOGS}/study_config.log",
    benchmark:
        f"{BENCH}/study_config.tsv"
    priority: PRIORITY_RESULTS
    resources:
        **estimated("study_config"),
    conda:
        CONDA_ENV
    shell:
        "fwi-attn check-config --config \"$FWI_ATTN_STUDY_CONFIG\" --write {output} > {log} 2>&1"


# Data: one job per shard (shards have independent seeds, so they run in any order or in
# parallel), a preview figure of the first training shard, and train-split statistics.


rule generate:
    output:
        f"{DATA}/{{split}}/shard-{{shard}}.h5",
    params:
        dataset=DATASET,
        deps=sections("survey", "geology", f"datasets.{DATASET}"),
    log:
        f"{LOGS}/generate/{DATASET}-{{split}}-{{shard}}.log",
    benchmark:
        f"{BENCH}/generate/{DATASET}-{{split}}-{{shard}}.tsv"
    threads: THREADS
    priority: shard_priority
    resources:
        **estimated("generate"),
    conda:
        CONDA_ENV
    shell:
        "fwi-attn generate --config \"$FWI_ATTN_STUDY_CONFIG\" --dataset {params.dataset} --split {wildcards.split}"
        " --shard {wildcards.shard} --out {output} --quiet > {log} 2>&1"


rule preview:
    input:
        shards("train")[0],
    output:
        report(
            f"{STUDY}/figures/dataset_preview.png",
            caption="../report/dataset_preview.rst",
            category="1. Dataset",
        ),
    log:
        f"{LOGS}/preview.log",
    benchmark:
        f"{BENCH}/preview.tsv"
    priority: PRIORITY_FILL
    resources:
        **estimated("preview"),
    conda:
        CONDA_ENV
    shell:
        "fwi-attn preview {input} --out {output} > {log} 2>&1"


rule stats:
    input:
        shards("train"),
    output:
        f"{DATA}/stats.json",
    params:
        dataset=DATASET,
        deps=sections("normalize", "geology.vmin", "geology.vmax"),
    log:
        f"{LOGS}/stats-{DATASET}.log",
    benchmark:
        f"{BENCH}/stats-{DATASET}.tsv"
    threads: THREADS
    priority: PRIORITY_RESULTS
    resources:
        **estimated("stats"),
    conda:
        CONDA_ENV
    shell:
        "fwi-attn stats --config \"$FWI_ATTN_STUDY_CONFIG\" --dataset {params.dataset} --out {output} > {log} 2>&1"
