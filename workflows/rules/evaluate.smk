# Evaluation of every result run on the test split (in a two-stage study also each attention
# variant's screening runs, for their attention maps against salt), plus the mean-model baseline:
# a network that cannot beat predicting the training split's mean model has learnt nothing.


rule evaluate:
    input:
        model=run_pattern(STUDY, RUN.model),
        test=shards("test"),
        stats=f"{DATA}/stats.json",
    output:
        predictions=run_pattern(STUDY, RUN.predictions),
        metrics=run_pattern(STUDY, RUN.metrics),
        # The showcase test sample's attention maps: the comparison figures never load a network.
        attention=run_pattern(STUDY, RUN.attention),
        # How well each attention map picks out salt, on every test sample.
        attention_salt=run_pattern(STUDY, RUN.attention_salt),
    params:
        out=out_dir,
        deps=sections("geology.vmin", "geology.vmax", "evaluate.salt_threshold", "evaluate.boundary_tolerance"),
    log:
        f"{LOGS}/evaluate/{{variant}}-seed{{seed}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{variant}}-seed{{seed}}.tsv"
    threads: THREADS
    priority: evaluate_priority
    group:
        SCORE_GROUP
    resources:
        **scoring("evaluate"),
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
        str(baseline_dir(STUDY) / RUN.metrics),
    params:
        out=out_dir,
        deps=sections("geology.vmin", "geology.vmax", "evaluate.salt_threshold", "evaluate.boundary_tolerance"),
    log:
        f"{LOGS}/evaluate/mean.log",
    benchmark:
        f"{BENCH}/evaluate/mean.tsv"
    threads: THREADS
    priority: PRIORITY_RESULTS
    group:
        SCORE_GROUP
    resources:
        **scoring("evaluate_mean"),
    conda:
        CONDA_ENV
    shell:
        "fwi-attn evaluate --config \"$FWI_ATTN_STUDY_CONFIG\" --baseline mean --out {params.out}"
        " --stats {input.stats} --quiet > {log} 2>&1"
