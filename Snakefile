# anceflow: ANCE dense retrieval training as a Snakemake workflow.
# Stages live in rules/<stage>.smk, their logic in the anceflow package under the same name.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "rules/common.smk"
include: "rules/download.smk"
include: "rules/prepare.smk"
include: "rules/tokenize.smk"
include: "rules/bm25.smk"
include: "rules/evaluate.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
