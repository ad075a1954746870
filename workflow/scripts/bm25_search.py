"""Retrieve a BM25 run for one split (rules bm25_search, bm25_search_train)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs


from anceflow.bm25 import search
from anceflow.workflow import script_logging

with script_logging(snakemake):
    p = snakemake.params
    search(snakemake.input.index, snakemake.input.queries, snakemake.output[0], k1=p.k1, b=p.b, hits=p.hits,
           threads=snakemake.threads, java=p.java, mem_mb=snakemake.resources.get("mem_mb"), log_file=sys.stderr)
