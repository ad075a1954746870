"""Sample hard negatives for each training (query, positive) from a run (rule bm25_negatives)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

import json

from anceflow.evaluate import read_qrels
from anceflow.io import atomic_path
from anceflow.negatives import ranked_lists, sample_negatives, write_negatives
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    p = snakemake.params
    df, stats = sample_negatives(ranked_lists(snakemake.input.run), read_qrels(snakemake.input.qrels),
                                 n=p.n, seed=p.seed, depth=p.depth)
    write_negatives(df, snakemake.output.negatives)
    with atomic_path(snakemake.output.stats) as tmp, open(tmp, "w") as fh:
        json.dump(stats, fh, indent=1)
    log.info("negatives: %s", stats)
