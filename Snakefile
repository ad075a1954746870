# anceflow: ANCE dense retrieval training as a Snakemake workflow.
# Stages live in rules/<stage>.smk, their logic in the anceflow package under the same name.
from snakemake.utils import min_version

min_version("9.0")


# The repository root: this file's folder, also when this file is included (workflow/Snakefile, the
# workflow catalog's entry point) or used as a module from another workflow.
ANCEFLOW_DIR = str(workflow.current_basedir)


# Relative to this file, so the workflow also runs from another directory (--directory).
configfile: f"{ANCEFLOW_DIR}/config/config.yaml"


include: "rules/common.smk"


wildcard_constraints:
    split="[^/.]+",
    system="[^/]+",
    n=r"\d+",
    shard=r"\d+",
    seed=r"\d+",


include: "rules/download.smk"
include: "rules/prepare.smk"
include: "rules/tokenize.smk"
include: "rules/bm25.smk"
include: "rules/train.smk"
include: "rules/encode.smk"
include: "rules/index.smk"
include: "rules/mine.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"
include: "rules/export.smk"


report: "workflow/report/workflow.rst"


rule all:
    input:
        all_outputs(),
    default_target: True
