"""A digest of library modules' source, so that a code edit counts as a change of what a stage
computes (the train rule's code parameter, the resumable state's fingerprint). Light to import:
the Snakefile uses it at every start."""

from __future__ import annotations

import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent

#: What a training job's result depends on: the loop, the model, the optimizer, how batches are
#: padded and cast (encode), how examples are read (negatives, runs, tokenize).
TRAINING_MODULES = ("train", "model", "model_source", "optim", "encode", "negatives", "runs", "tokenize")


def source_digest(modules=TRAINING_MODULES, package: Path = PACKAGE) -> str:
    digest = hashlib.sha1()
    for module in modules:
        digest.update((package / f"{module}.py").read_bytes())
    return digest.hexdigest()[:16]
