"""Build the Lucene BM25 index (rule bm25_index)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs


from anceflow.bm25 import build_index
from anceflow.workflow import script_logging

with script_logging(snakemake):
    build_index(snakemake.input[0], snakemake.output[0], threads=snakemake.threads, java=snakemake.params.java,
                mem_mb=snakemake.resources.get("mem_mb"), log_file=sys.stderr)
