"""metrics.tsv over seeds: each metric's mean, the number of seeds and each spread (rule seed_metrics)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

import pandas as pd

from anceflow.compare import seed_summary, write_tsv
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    tables = {seed: pd.read_csv(path, sep="\t", dtype={"split": str})
              for seed, path in zip(snakemake.params.seeds, snakemake.input)}
    summary = seed_summary(tables)
    write_tsv(snakemake.output[0], summary)
    log.info("%d seeds -> %s:\n%s", len(tables), snakemake.output[0], summary.to_string(index=False))
