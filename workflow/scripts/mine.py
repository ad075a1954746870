"""Mine round n's negatives from a dense run with the false-negative controls (rule mine_negatives)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

import json

from anceflow.io import atomic_path
from anceflow.negatives import CrossEncoderFilter, make_negatives
from anceflow.provenance import mining_provenance
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    p, inp = snakemake.params, snakemake.input
    controls = p.controls
    cross_encoder = None
    if controls["cross_encoder"]:
        import torch

        from anceflow.crossencoder import CrossEncoder

        torch.set_num_threads(snakemake.threads)
        ce = controls["cross_encoder"]
        scorer = CrossEncoder(inp.get("cross_encoder") or ce["name_or_path"], queries=inp.queries,
                              collection=inp.collection, batch_size=ce["batch_size"], max_len=ce["max_len"],
                              use_gpu=p.use_gpu, max_cpu_hours=p.max_cpu_hours)
        cross_encoder = CrossEncoderFilter(scorer, threshold=ce["threshold"], mode=ce["mode"],
                                           oversample=ce["oversample"])
    stats = make_negatives(inp.run, inp.queries, inp.collection, inp.qrels, snakemake.output.negatives, n=p.n,
                           seed=p.seed, depth=p.depth, round_=int(snakemake.wildcards.n),
                           query_fraction=p.query_fraction, query_selection=p.query_selection,
                           previous=inp.previous, scores=inp.scores, positives=inp.positives,
                           window=controls["rank_window"], relative_margin=controls["relative_margin"],
                           cross_encoder=cross_encoder)
    if cross_encoder is not None:
        stats["cross_encoder"].update(device=str(scorer.device), seconds=round(scorer.seconds, 2))
    # What mined them (the checkpoint by hash) and the run's hash.
    stats.update(mining_provenance(snakemake.output.negatives, run=inp.run, checkpoint=inp.get("checkpoint")))
    with atomic_path(snakemake.output.stats) as tmp, open(tmp, "w") as fh:
        json.dump(stats, fh, indent=1)
    log.info("negatives: %s", {k: v for k, v in stats.items() if k != "score_gap"})
