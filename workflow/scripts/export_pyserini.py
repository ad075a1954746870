"""Write a checkpoint's index as Pyserini's FaissSearcher expects it (rule export_pyserini)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

import pyarrow.parquet as pq

from anceflow.index import export_pyserini
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    inp = snakemake.input
    docids = pq.read_table(inp.corpus_rows, columns=["pid"]).column("pid").to_pylist()
    rows = export_pyserini(snakemake.output[0], docids, shards=list(inp.shards), index_path=inp.get("index"))
    log.info("exported %d rows to %s", rows, snakemake.output[0])
