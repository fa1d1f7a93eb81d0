# Data: one job per shard (shards have independent seeds, so they run in any order or in
# parallel), a preview figure of the first training shard, and train-split statistics.


rule generate:
    output:
        f"{DATA}/{{split}}/shard-{{shard}}.h5",
    params:
        config=STUDY_CONFIG,
        dataset=DATASET,
        deps=sections("survey", "geology", f"datasets.{DATASET}"),
    log:
        f"{LOGS}/generate/{DATASET}-{{split}}-{{shard}}.log",
    benchmark:
        f"{BENCH}/generate/{DATASET}-{{split}}-{{shard}}.tsv"
    threads: THREADS
    resources:
        **GPU,
    conda:
        CONDA_ENV
    shell:
        "fwi-attn generate --config {params.config} --dataset {params.dataset} --split {wildcards.split}"
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
        config=STUDY_CONFIG,
        dataset=DATASET,
        deps=sections("normalize", "geology.vmin", "geology.vmax"),
    log:
        f"{LOGS}/stats-{DATASET}.log",
    benchmark:
        f"{BENCH}/stats-{DATASET}.tsv"
    threads: THREADS
    conda:
        CONDA_ENV
    shell:
        "fwi-attn stats --config {params.config} --dataset {params.dataset} --out {output} > {log} 2>&1"
