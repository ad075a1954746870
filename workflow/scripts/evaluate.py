"""Evaluate one system's run on one split (rule evaluate)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

from anceflow.evaluate import evaluate_run, read_qrels, read_run, summarize, write_metrics
from anceflow.io import atomic_path
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    per_query = evaluate_run(read_run(snakemake.input.run), read_qrels(snakemake.input.qrels),
                             relevance_level=snakemake.params.relevance_level)
    with atomic_path(snakemake.output.per_query) as tmp:
        per_query.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
    # Rule evaluate_bm25's outputs name their system, evaluate's carry it as a wildcard.
    row = summarize(per_query, snakemake.wildcards.get("system", "bm25"), snakemake.wildcards.split,
                    snakemake.params.get("ranking", "full"))
    write_metrics(snakemake.output.summary, [row])
    log.info("%s", row)
