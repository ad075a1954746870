"""Tokenize one split's queries (rule tokenize_queries)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

from anceflow.tokenize import tokenize_queries, write_meta
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    p = snakemake.params
    stats = tokenize_queries(snakemake.input[0], p.prefix, p.tokenizer, max_len=p.max_len, batch_size=p.batch_size)
    write_meta(snakemake.output.meta, stats)
    log.info("tokenized queries: %s", stats)
