# Training: one job per (variant, seed). last.pt (for `fwi-attn train --resume`) is written
# beside the outputs but not declared, so a failed job does not have Snakemake delete it.


rule train:
    input:
        train=shards("train"),
        val=shards("val"),
        stats=f"{DATA}/stats.json",
    output:
        model=f"{STUDY}/{{variant}}/seed{{seed}}/model.pt",
        history=f"{STUDY}/{{variant}}/seed{{seed}}/history.csv",
    params:
        config=STUDY_CONFIG,
        out=out_dir,
        deps=sections("survey", "model", "train", f"datasets.{DATASET}"),
    log:
        f"{LOGS}/train/{{variant}}-seed{{seed}}.log",
    benchmark:
        f"{BENCH}/train/{{variant}}-seed{{seed}}.tsv"
    threads: THREADS
    resources:
        **GPU,
    conda:
        CONDA_ENV
    shell:
        "fwi-attn train --config {params.config} --variant {wildcards.variant} --seed {wildcards.seed}"
        " --out {params.out} --stats {input.stats} --quiet > {log} 2>&1"
