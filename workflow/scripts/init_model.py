"""Save the pretrained model as the "zeroshot" checkpoint (rule init_model)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

from anceflow.model import EncoderSpec, load_dual_encoder, load_tokenizer
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    p = snakemake.params
    model = load_dual_encoder(p.name_or_path, EncoderSpec(**p.spec), seed=p.seed)
    model.save(snakemake.output[0], load_tokenizer(p.name_or_path))
    log.info("saved %s as %s with %s", p.name_or_path, snakemake.output[0], p.spec)
