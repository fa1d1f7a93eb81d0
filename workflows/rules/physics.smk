# Physics checks: re-simulate each run's predicted test models and compare the data with the
# observed gathers; optionally refine predictions by full-waveform inversion (expensive).


rule physics:
    input:
        predictions=f"{STUDY}/{{variant}}/seed{{seed}}/predictions.h5",
        test=shards("test"),
        stats=f"{DATA}/stats.json",  # its mean model is the baseline of the misfit
    output:
        json=f"{STUDY}/{{variant}}/seed{{seed}}/physics.json",
        # The showcase test sample's observed and re-simulated gathers, for the comparison figures.
        gathers=f"{STUDY}/{{variant}}/seed{{seed}}/gathers.h5",
        png=report(
            f"{STUDY}/{{variant}}/seed{{seed}}/physics.png",
            caption="../report/physics.rst",
            category="4. Physics",
            subcategory="{variant}",
            labels={"variant": "{variant}", "seed": "{seed}", "figure": "physics check"},
        ),
    params:
        out=out_dir,
        deps=sections("survey", "physics.samples", "evaluate.salt_threshold"),
    log:
        f"{LOGS}/physics/{{variant}}-seed{{seed}}.log",
    benchmark:
        f"{BENCH}/physics/{{variant}}-seed{{seed}}.tsv"
    threads: THREADS
    resources:
        **estimated("physics"),
    conda:
        CONDA_ENV
    shell:
        "fwi-attn physics --config \"$FWI_ATTN_STUDY_CONFIG\" --predictions {input.predictions} --out {params.out}"
        " > {log} 2>&1"


rule refine:
    input:
        predictions=f"{STUDY}/{{variant}}/seed{{seed}}/predictions.h5",
        test=shards("test"),
    output:
        json=f"{STUDY}/{{variant}}/seed{{seed}}/refine.json",
        models=f"{STUDY}/{{variant}}/seed{{seed}}/refined.npy",
        png=report(
            f"{STUDY}/{{variant}}/seed{{seed}}/refine.png",
            caption="../report/refine.rst",
            category="4. Physics",
            subcategory="{variant}",
            labels={"variant": "{variant}", "seed": "{seed}", "figure": "FWI refinement"},
        ),
    params:
        out=out_dir,
        deps=sections("survey", "physics.refine"),
    log:
        f"{LOGS}/refine/{{variant}}-seed{{seed}}.log",
    benchmark:
        f"{BENCH}/refine/{{variant}}-seed{{seed}}.tsv"
    threads: THREADS
    resources:
        **estimated("refine"),
    conda:
        CONDA_ENV
    shell:
        "fwi-attn refine --config \"$FWI_ATTN_STUDY_CONFIG\" --predictions {input.predictions} --out {params.out}"
        " > {log} 2>&1"
