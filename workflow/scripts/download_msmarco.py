"""Download MS MARCO (passage or document) into the local TSV layout (rule download_msmarco)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

from anceflow.download import fetch_msmarco
from anceflow.workflow import script_logging

with script_logging(snakemake):
    fetch_msmarco(snakemake.wildcards.kind, snakemake.output[0], base_url=snakemake.params.base_url,
                  nist_base_url=snakemake.params.nist_url, cache_dir=snakemake.params.cache)
