"""Validate and normalize the dataset into parquet (rule prepare)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

import os

from anceflow.prepare import prepare_beir, prepare_local
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    first = snakemake.input[0]
    src = first if os.path.isdir(first) else os.path.dirname(first)
    prepare = prepare_beir if snakemake.params.source == "beir" else prepare_local
    stats = prepare(src, snakemake.params.out_dir, snakemake.params.splits, train_split=snakemake.params.train_split,
                    keep_unjudged=snakemake.params.keep_unjudged)
    log.info("prepared %s: %s", src, stats)
