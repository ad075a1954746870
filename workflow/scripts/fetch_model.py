"""Store a snapshot of the hub model on disk, on the submit host (rule fetch_model)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

from anceflow.model_source import fetch_model
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    p = snakemake.params
    key = p.get("key", "model.name_or_path")  # rule fetch_cross_encoder fetches the cross-encoder
    try:
        folder = fetch_model(p.name, snakemake.output[0], revision=p.revision, endpoint=p.endpoint,
                             cross_encoder=p.get("cross_encoder", False))
    except Exception as exc:
        raise RuntimeError(f"config key {key!r}: {p.name!r} is not a local folder and could not be "
                           f"fetched from the hub as a model that loads offline ({type(exc).__name__}: {exc})") from exc
    log.info("fetched %s into %s", p.name, folder)
