"""Sample one round's hard negatives from a run, with diagnostics (rules bm25_negatives, mine_negatives)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

import json

from anceflow.io import atomic_path
from anceflow.negatives import make_negatives
from anceflow.provenance import mining_provenance
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    p, inp = snakemake.params, snakemake.input
    stats = make_negatives(inp.run, inp.queries, inp.collection, inp.qrels, snakemake.output.negatives, n=p.n,
                           seed=p.seed, depth=p.depth, round_=int(snakemake.wildcards.get("n", 0)),
                           query_fraction=p.query_fraction, query_selection=p.get("query_selection", "random"),
                           previous=inp.get("previous"))
    # What mined them (BM25 and its settings, or a checkpoint by hash) and the run's hash.
    stats.update(mining_provenance(snakemake.output.negatives, run=inp.run, checkpoint=inp.get("checkpoint"),
                                   bm25=p.get("bm25")))
    with atomic_path(snakemake.output.stats) as tmp, open(tmp, "w") as fh:
        json.dump(stats, fh, indent=1)
    log.info("negatives: %s", stats)
