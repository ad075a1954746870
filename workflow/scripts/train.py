"""Train one round (rule train): in-process on CPU or one GPU, through torchrun on several GPUs."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

from pathlib import Path

from anceflow.train import TrainSettings, launch
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    inp, out = snakemake.input, snakemake.output
    settings = TrainSettings(
        init=inp.init,
        negatives=inp.negatives,
        query_tokens=inp.query_tokens[0].removesuffix(".tokens.npy"),
        corpus_tokens=inp.corpus_tokens[0].removesuffix(".tokens.npy"),
        out_dir=out.checkpoint,
        log_csv=out.log_csv,
        state_dir=snakemake.params.state_dir,
        # results/<name>/tensorboard/<round-n | bm25neg>: one TensorBoard run per training job.
        tensorboard_dir=str(Path(out.log_csv).parent.parent / "tensorboard" / Path(out.log_csv).name.removesuffix(".log.csv")),
        threads=snakemake.threads,
        save_every=snakemake.config["train"]["save_every"],
        log_every=snakemake.config["train"]["log_every"],
        **snakemake.params.settings,
    )
    log.info("training summary: %s", launch(settings, log_path=snakemake.log[0]))
