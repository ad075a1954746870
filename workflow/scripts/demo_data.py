"""Generate the built-in demo dataset (rule demo_data)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

from anceflow.io import atomic_path
from anceflow.prepare.demo import generate_demo
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    sizes = snakemake.params.sizes
    with atomic_path(snakemake.output[0]) as tmp:
        counts = generate_demo(tmp, seed=snakemake.params.seed, n_passages=sizes["passages"],
                               n_train=sizes["train_queries"], n_dev=sizes["dev_queries"])
    log.info("demo dataset: %s", counts)
