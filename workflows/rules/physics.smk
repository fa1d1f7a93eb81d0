# Physics checks: re-simulate the predicted test models of the result runs and compare the data
# with the observed gathers, one job per variant over its seeds (the simulator loads once per job,
# and the mean model, the same for every run, is simulated once per job; a variant's job starts as
# soon as its runs are evaluated); optionally refine predictions by full-waveform inversion
# (expensive, one job per run).


rule physics:
    input:
        predictions=physics_files(RUN.predictions),
        test=shards("test"),
        stats=f"{DATA}/stats.json",  # its mean model is the baseline of the misfit
    output:
        json=physics_files(RUN.physics),
        # Each run's showcase test sample, observed and re-simulated, for the comparison figures.
        gathers=physics_files(RUN.gathers),
        png=[
            report(
                f"{STUDY}/{{variant}}/seed{s}/{RUN.physics_figure}",
                caption="../report/physics.rst",
                category="4. Physics",
                subcategory="{variant}",
                labels={"variant": "{variant}", "seed": str(s), "figure": "physics check"},
            )
            for s in PHYSICS_SEEDS
        ],
    params:
        deps=sections("survey", "physics.samples", "evaluate.salt_threshold", "geology.vmin", "geology.vmax"),
    log:
        f"{LOGS}/physics/{{variant}}.log",
    benchmark:
        f"{BENCH}/physics/{{variant}}.tsv"
    threads: THREADS
    priority: PRIORITY_RESULTS
    resources:
        **estimated("physics"),
    conda:
        CONDA_ENV
    shell:
        "fwi-attn physics --config \"$FWI_ATTN_STUDY_CONFIG\" --predictions {input.predictions} --figure > {log} 2>&1"


rule refine:
    input:
        predictions=run_pattern(STUDY, RUN.predictions),
        test=shards("test"),
    output:
        json=run_pattern(STUDY, RUN.refine),
        models=run_pattern(STUDY, RUN.refined),
        png=report(
            run_pattern(STUDY, RUN.refine_figure),
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
    priority: PRIORITY_RESULTS
    resources:
        **estimated("refine"),
    conda:
        CONDA_ENV
    shell:
        "fwi-attn refine --config \"$FWI_ATTN_STUDY_CONFIG\" --predictions {input.predictions} --out {params.out}"
        " > {log} 2>&1"
