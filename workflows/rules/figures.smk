# Figures: per-run jobs (examples, training curve) so that one re-trained run redraws only its
# own figures, and one comparison job over every run (tables, bars, cost, attention, gathers).


rule figures_run:
    input:
        predictions=run_pattern(STUDY, RUN.predictions),
        history=run_pattern(STUDY, RUN.history),
    output:
        examples=report(
            f"{STUDY}/figures/runs/{{variant}}-seed{{seed}}-examples.png",
            caption="../report/run_examples.rst",
            category="3. Runs",
            subcategory="{variant}",
            labels={"variant": "{variant}", "seed": "{seed}", "figure": "examples"},
        ),
        history=report(
            f"{STUDY}/figures/runs/{{variant}}-seed{{seed}}-history.png",
            caption="../report/run_history.rst",
            category="3. Runs",
            subcategory="{variant}",
            labels={"variant": "{variant}", "seed": "{seed}", "figure": "training curves"},
        ),
    params:
        deps=sections("survey.dx", "geology.vmin", "geology.vmax", "evaluate.n_examples"),
    log:
        f"{LOGS}/figures/{{variant}}-seed{{seed}}.log",
    benchmark:
        f"{BENCH}/figures/{{variant}}-seed{{seed}}.tsv"
    priority: PRIORITY_FILL
    resources:
        **estimated("figures_run"),
    conda:
        CONDA_ENV
    shell:
        "fwi-attn figures --config \"$FWI_ATTN_STUDY_CONFIG\" --variant {wildcards.variant} --seed {wildcards.seed}"
        " > {log} 2>&1"


rule figures_compare:
    input:
        metrics=result_files(RUN.metrics),
        mean=str(baseline_dir(STUDY) / RUN.metrics),
        history=result_files(RUN.history),
        physics=result_files(RUN.physics),
        refine=refine_files,
        # The predictions, attention maps and gathers figures show each variant's first run, from
        # files only: evaluate wrote the attention maps and physics the re-simulated gathers.
        predictions=result_files(RUN.predictions, first_seed=True),
        attention=result_files(RUN.attention, first_seed=True),
        gathers=result_files(RUN.gathers, first_seed=True),
        attention_salt=result_files(RUN.attention_salt),
    output:
        table_csv=comparison_figures()["table_csv"],
        table_md=comparison_figures()["table_md"],
        bars=comparison_output("bars", "bars"),
        cost=comparison_output("cost", "cost"),
        curves=comparison_output("curves", "curves"),
        predictions=comparison_output("predictions", "predictions"),
        attention=comparison_output("attention", "attention"),
        gathers=comparison_output("gathers", "gathers"),
        physics=comparison_output("physics", "physics_compare"),
        attention_salt=comparison_output("attention_salt", "attention_salt"),
        attention_iou=comparison_output("attention_iou", "attention_iou"),
    params:
        deps=sections(
            "study.variants", "study.seeds", "study.confirm", "survey.dx", "geology.vmin", "geology.vmax", "evaluate.n_examples",
            "evaluate.salt_threshold",
        ),
    log:
        f"{LOGS}/figures/compare.log",
    benchmark:
        f"{BENCH}/figures/compare.tsv"
    threads: THREADS
    priority: PRIORITY_RESULTS
    resources:
        **estimated("figures_compare"),
    conda:
        CONDA_ENV
    shell:
        "fwi-attn figures --config \"$FWI_ATTN_STUDY_CONFIG\" --compare > {log} 2>&1"
