"""Search one split's queries against a checkpoint's index into a TREC run (rule dense_search)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

from anceflow.search import dense_run
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    inp, p = snakemake.input, snakemake.params
    stats = dense_run(inp.index, inp.queries, inp.query_rows, inp.corpus_rows, inp.collection, snakemake.output[0],
                      depth=p.depth, chunks=p.chunks, tag=snakemake.wildcards.system, nprobe=p.nprobe,
                      ef_search=p.ef_search, use_gpu=p.use_gpu)
    log.info("searched: %s", stats)
