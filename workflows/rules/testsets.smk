# Generalisation: test sets from other velocity models (study.test_sets) and from other families
# of the generator (study.transfer_families), each built once on the study's survey, scored by
# every run and by the mean model, and compared with the training split's models.


# One set's results folder, as a pattern: each run's and the mean model's scores on it.
TESTSET_RESULTS = str(test_set_results(STUDY, "{testset}"))


wildcard_constraints:
    testset="|".join(re.escape(name) for name in SET_NAMES) or "(?!)",


rule testset:
    input:
        test_set_models,
    output:
        f"{DATA}/testsets/{{testset}}/testset.json",
    params:
        folder=test_set_folder,
        options=testset_options,
        deps=testset_deps,
    log:
        f"{LOGS}/testset/{{testset}}.log",
    benchmark:
        f"{BENCH}/testset/{{testset}}.tsv"
    threads: THREADS
    priority: PRIORITY_RESULTS
    resources:
        **estimated("generate"),
    conda:
        CONDA_ENV
    # --overwrite: a rebuilt set replaces the shards of the previous one (testset.json, written
    # last, is the output Snakemake tracks).
    shell:
        "fwi-attn testset {input:q} --config \"$FWI_ATTN_STUDY_CONFIG\" --name {wildcards.testset}"
        " --out {params.folder} {params.options} --overwrite --quiet > {log} 2>&1"


rule evaluate_testset:
    input:
        model=run_pattern(STUDY, RUN.model),
        testset=f"{DATA}/testsets/{{testset}}/testset.json",
        stats=f"{DATA}/stats.json",
    output:
        predictions=run_pattern(TESTSET_RESULTS, RUN.predictions),
        metrics=run_pattern(TESTSET_RESULTS, RUN.metrics),
        attention=run_pattern(TESTSET_RESULTS, RUN.attention),
        attention_salt=run_pattern(TESTSET_RESULTS, RUN.attention_salt),
    params:
        out=out_dir,
        folder=test_set_folder,
        deps=sections("geology.vmin", "geology.vmax", "evaluate.salt_threshold", "evaluate.boundary_tolerance"),
    log:
        f"{LOGS}/evaluate/{{testset}}-{{variant}}-seed{{seed}}.log",
    benchmark:
        f"{BENCH}/evaluate/{{testset}}-{{variant}}-seed{{seed}}.tsv"
    threads: THREADS
    priority: PRIORITY_RESULTS
    group:
        SCORE_GROUP
    resources:
        **scoring("evaluate"),
    conda:
        CONDA_ENV
    shell:
        "fwi-attn evaluate --config \"$FWI_ATTN_STUDY_CONFIG\" --checkpoint {input.model}"
        " --test-set {wildcards.testset}={params.folder} --out {params.out} --stats {input.stats}"
        " --quiet > {log} 2>&1"


rule evaluate_testset_mean:
    input:
        train=shards("train"),
        testset=f"{DATA}/testsets/{{testset}}/testset.json",
        stats=f"{DATA}/stats.json",
    output:
        str(baseline_dir(TESTSET_RESULTS) / RUN.metrics),
    params:
        out=out_dir,
        folder=test_set_folder,
        deps=sections("geology.vmin", "geology.vmax", "evaluate.salt_threshold", "evaluate.boundary_tolerance"),
    log:
        f"{LOGS}/evaluate/{{testset}}-mean.log",
    benchmark:
        f"{BENCH}/evaluate/{{testset}}-mean.tsv"
    threads: THREADS
    priority: PRIORITY_RESULTS
    group:
        SCORE_GROUP
    resources:
        **scoring("evaluate_mean"),
    conda:
        CONDA_ENV
    shell:
        "fwi-attn evaluate --config \"$FWI_ATTN_STUDY_CONFIG\" --baseline mean"
        " --test-set {wildcards.testset}={params.folder} --out {params.out} --stats {input.stats}"
        " --quiet > {log} 2>&1"


rule compare_testset:
    input:
        train=shards("train"),
        testset=f"{DATA}/testsets/{{testset}}/testset.json",
    output:
        json=f"{STUDY}/testsets/{{testset}}/compare_sets.json",
        png=f"{STUDY}/testsets/{{testset}}/compare_sets.png",
    params:
        train=split_folder,
        folder=test_set_folder,
        out=out_dir,
        deps=sections("evaluate.salt_threshold"),
    log:
        f"{LOGS}/compare_sets/{{testset}}.log",
    benchmark:
        f"{BENCH}/compare_sets/{{testset}}.tsv"
    priority: PRIORITY_RESULTS
    group:
        SCORE_GROUP
    resources:
        **scoring("compare_sets"),
    conda:
        CONDA_ENV
    shell:
        "fwi-attn compare-sets {params.train} {params.folder} --names train {wildcards.testset}"
        " --config \"$FWI_ATTN_STUDY_CONFIG\" --out {params.out} > {log} 2>&1"
