"""Encode one corpus shard or one query split with a checkpoint (rules encode_corpus, encode_queries)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

from anceflow.encode import encode_table
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    p = snakemake.params
    shard = int(snakemake.wildcards.get("shard", 0))
    side = "doc" if snakemake.rule == "encode_corpus" else "query"
    prefix = snakemake.input.tokens[0].removesuffix(".tokens.npy")
    stats = encode_table(snakemake.input.checkpoint, prefix, snakemake.output[0], side=side, shard=shard,
                         shards=p.shards, batch_size=p.batch_size, dtype=p.dtype, precision=p.precision,
                         threads=snakemake.threads, probe_path=snakemake.output.get("probe"))
    log.info("encoded: %s", stats)
