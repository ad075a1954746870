"""Export the splits' ir_datasets ids into the local layout (rule download_ir_datasets)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

from anceflow.irds import export
from anceflow.workflow import script_logging

with script_logging(snakemake):
    export(snakemake.params.ids, snakemake.output[0], candidates=snakemake.params.candidates)
