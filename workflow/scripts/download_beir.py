"""Download a BEIR dataset zip and extract it (rule download_beir)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

from anceflow.download import fetch_beir
from anceflow.workflow import script_logging

with script_logging(snakemake):
    fetch_beir(snakemake.wildcards.beir_name, snakemake.output[0], base_url=snakemake.params.base_url)
