"""Collect every (system, split) summary into metrics.tsv (rule metrics)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

import pandas as pd

from anceflow.evaluate import write_metrics
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    rows = [row for path in snakemake.input for row in pd.read_csv(path, sep="\t", dtype={"split": str}).to_dict("records")]
    write_metrics(snakemake.output[0], rows)
    log.info("wrote %d rows to %s", len(rows), snakemake.output[0])
