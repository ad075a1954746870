"""Tokenize the collection into memory-mapped token ids (rule tokenize_corpus)."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")  # the anceflow package, also in conda envs

import torch

from anceflow.tokenize import tokenize_corpus, write_meta
from anceflow.workflow import script_logging

with script_logging(snakemake) as log:
    torch.set_num_threads(snakemake.threads)
    p = snakemake.params
    stats = tokenize_corpus(snakemake.input[0], p.prefix, p.tokenizer, max_len=p.max_len, chunks=p.chunks,
                            batch_size=p.batch_size, field_separator=p.field_separator)
    write_meta(snakemake.output.meta, stats)
    log.info("tokenized corpus: %s", stats)
