"""Save the pretrained model as the "zeroshot" checkpoint, with its manifest (rule init_model)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

from anceflow.model import EncoderSpec
from anceflow.train import init_checkpoint
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    p = snakemake.params
    # The model's name as the config gives it is recorded, not a parameter: naming is bookkeeping.
    manifest = init_checkpoint(p.name_or_path, EncoderSpec(**p.spec), snakemake.output[0], seed=p.seed,
                               model_name=snakemake.config["model"]["name_or_path"])
    log.info("saved %s as %s with %s (sha256 %s)", p.name_or_path, snakemake.output[0], p.spec,
             manifest["weights"]["sha256"])
