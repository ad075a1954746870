"""Store a snapshot of the hub model on disk, on the submit host (rule fetch_model)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

from anceflow.models import fetch_model
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    p = snakemake.params
    folder = fetch_model(p.name, snakemake.output[0], revision=p.revision, endpoint=p.endpoint)
    log.info("fetched %s into %s", p.name, folder)
