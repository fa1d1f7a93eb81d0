# Evaluation of every run on the test split, plus the mean-model baseline: a network that
# cannot beat predicting the training split's mean model has learnt nothing from the data.


rule evaluate:
    input:
        model=f"{STUDY}/{{variant}}/seed{{seed}}/model.pt",
        test=shards("test"),
        stats=f"{DATA}/stats.json",
    output:
        predictions=f"{STUDY}/{{variant}}/seed{{seed}}/predictions.h5",
        metrics=f"{STUDY}/{{variant}}/seed{{seed}}/metrics.json",
        # The showcase test sample's attention maps: the comparison figures never load a network.
        attention=f"{STUDY}/{{variant}}/seed{{seed}}/attention.h5",
        # How well each attention map picks out salt, on every test sample.
        attention_salt=f"{STUDY}/{{variant}}/seed{{seed}}/attention_salt.json",
    params:
        out=out_dir,
        deps=sections("geology.vmin", "geology.vmax", "evaluate.salt_threshold", "evaluate.boundary_tolerance"),
    log:
        f"{LOGS}/evaluate/{{variant}}-seed{{seed}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{variant}}-seed{{seed}}.tsv"
    threads: THREADS
    priority: PRIORITY_RESULTS
    resources:
        **estimated("evaluate"),
    conda:
        CONDA_ENV
    shell:
        "fwi-attn evaluate --config \"$FWI_ATTN_STUDY_CONFIG\" --checkpoint {input.model} --out {params.out}"
        " --stats {input.stats} --quiet > {log} 2>&1"


rule evaluate_mean:
    input:
        train=shards("train"),
        test=shards("test"),
        stats=f"{DATA}/stats.json",
    output:
        f"{STUDY}/mean/metrics.json",
    params:
        out=out_dir,
        deps=sections("geology.vmin", "geology.vmax", "evaluate.salt_threshold", "evaluate.boundary_tolerance"),
    log:
        f"{LOGS}/evaluate/mean.log",
    benchmark:
        f"{BENCH}/evaluate/mean.tsv"
    threads: THREADS
    priority: PRIORITY_RESULTS
    resources:
        **estimated("evaluate_mean"),
    conda:
        CONDA_ENV
    shell:
        "fwi-attn evaluate --config \"$FWI_ATTN_STUDY_CONFIG\" --baseline mean --out {params.out}"
        " --stats {input.stats} --quiet > {log} 2>&1"
