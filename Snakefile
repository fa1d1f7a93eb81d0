# The attention-variant study, end to end: `snakemake --cores 2 all` (or `make all`).
# Rules live in workflows/rules/, one file per stage; helpers in workflows/rules/common.smk.
from snakemake.utils import min_version, validate

# 9.27: priorities computed from wildcards (workflows/rules/common.smk).
min_version("9.27")

# A config given with --configfile replaces the default study instead of being merged into it
# (Snakemake's default), so a user's config gets schema defaults, not default.yaml's values.
if not workflow.config_settings.configfiles:

    configfile: f"{workflow.basedir}/workflows/config/default.yaml"


validate(config, "workflows/schemas/config.schema.yaml")


include: "workflows/rules/common.smk"
include: "workflows/rules/data.smk"
include: "workflows/rules/train.smk"
include: "workflows/rules/evaluate.smk"
include: "workflows/rules/testsets.smk"
include: "workflows/rules/physics.smk"
include: "workflows/rules/figures.smk"
include: "workflows/rules/report.smk"


# Small jobs (a config record, a preview, per-run figures, the report, the notebook) run on the
# submitting machine: a cluster job's queueing and start-up would cost more than they do.
localrules:
    study_config,
    select,
    preview,
    figures_run,
    report,
    notebook,


# Under the lock, before the first job (never in a dry run): shards that a larger config left.
onstart:
    remove_stale_shards()


rule all:
    input:
        study_outputs(),
        result_outputs,
    default_target: True
