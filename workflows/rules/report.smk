# The weekly-report bundle: report.md + self-contained report.html (fwi-attn report), and the
# comparison notebook executed with papermill on this study's results.


rule report:
    input:
        comparison=list(comparison_figures().values()),
        preview=f"{STUDY}/figures/dataset_preview.png",
        metrics=result_files(RUN.metrics),
        mean=str(baseline_dir(STUDY) / RUN.metrics),
        physics=result_files(RUN.physics),
        refine=refine_files,
        examples=result_figures,
        generalisation=generalisation_inputs,
        # A two-stage study's screening runs' attention against salt: descriptive, beside the results.
        screening=screening_files,
        selection=[str(SELECTION)] if CONFIRM else [],
        config=STUDY_CONFIG,
    output:
        md=f"{REPORT}/report.md",
        html=report(f"{REPORT}/report.html", caption="../report/weekly.rst", category="0. Weekly report"),
        # The true-versus-predicted figure on the test sets, drawn by the report from their predictions.
        generalisation=generalisation_figure(),
    params:
        deps=sections("study", "survey.dx", "geology.vmin", "geology.vmax", "evaluate.salt_threshold"),
    log:
        f"{LOGS}/report.log",
    benchmark:
        f"{BENCH}/report.tsv"
    priority: PRIORITY_RESULTS
    resources:
        **estimated("report"),
    conda:
        CONDA_ENV
    shell:
        "fwi-attn report --config \"$FWI_ATTN_STUDY_CONFIG\" > {log} 2>&1"


rule notebook:
    input:
        notebook=f"{REPO}/notebooks/compare_attention.ipynb",
        metrics=result_files(RUN.metrics),
        mean=str(baseline_dir(STUDY) / RUN.metrics),
        history=result_files(RUN.history),
        # The notebook also shows the comparison figures, so it runs after them.
        figures=list(comparison_figures().values()),
        config=STUDY_CONFIG,
    output:
        f"{REPORT}/compare_attention.ipynb",
    params:
        study=STUDY,
        reference=STUDY_CFG.reference,
    log:
        f"{LOGS}/notebook.log",
    benchmark:
        f"{BENCH}/notebook.tsv"
    priority: PRIORITY_RESULTS
    resources:
        **estimated("notebook"),
    conda:
        CONDA_ENV
    # papermill, not fwi-attn: the notebook only calls fwi_attn.results.report/plots on the results.
    shell:
        "python -m papermill {input.notebook} {output} -k python3 -p study_dir {params.study}"
        " -p reference {params.reference} > {log} 2>&1"
