"""Download a BEIR dataset zip and extract it (rule download_beir)."""
from anceflow.download import fetch_beir
from anceflow.workflow import script_logging

with script_logging(snakemake):
    fetch_beir(snakemake.wildcards.beir_name, snakemake.output[0], base_url=snakemake.params.base_url)
