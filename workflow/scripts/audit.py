"""Audit one round's negatives: near-duplicates of a positive, positives of other queries (rule audit_negatives)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

import json

from anceflow.audit import audit_negatives
from anceflow.io import atomic_path
from anceflow.model_source import load_tokenizer
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    inp = snakemake.input
    special = load_tokenizer(snakemake.params.tokenizer).all_special_ids
    figures = audit_negatives(inp.negatives, inp.queries, inp.collection, inp.qrels,
                              inp.corpus[0].removesuffix(".tokens.npy"), threshold=snakemake.params.jaccard,
                              special=special)
    figures["round"] = int(snakemake.wildcards.n)
    with atomic_path(snakemake.output[0]) as tmp, open(tmp, "w") as fh:
        json.dump(figures, fh, indent=1)
    log.info("audit: %s", figures)
