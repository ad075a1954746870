"""Build the faiss index of a checkpoint's corpus vectors (rule build_index)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

from anceflow.index import build_index, save_index
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    cfg = snakemake.params.index
    index = build_index(list(snakemake.input), index_type=cfg["type"], nlist=cfg["nlist"], hnsw_m=cfg["hnsw_m"],
                        pq_m=cfg["pq_m"], seed=snakemake.params.seed, use_gpu=cfg["use_gpu"])
    save_index(index, snakemake.output[0])
    log.info("%s index of %d vectors", cfg["type"], index.ntotal)
