"""Scaling: encoding and indexing time and peak memory at 1x, 2x and 4x the SciFact collection.

The collection is replicated with new ids (pid-1, pid-2, ...), prepared and tokenized (256
tokens), then encoded with all-MiniLM-L6-v2 (the pipeline's defaults: precision auto, batch 64,
float32 vectors, one shard) and indexed (flat, the default, and ivf_flat). Each step runs in a
fresh subprocess, so its peak RSS (getrusage) is its own. Time should grow linearly with the
collection; encoding's peak memory should stay flat (one batch plus memory-mapped output),
while an index holds its vectors (float32, n x 384 x 4 bytes) in memory by design.

    python bench/scaling.py [--factors 1 2 4]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from common import REPO, SCIFACT, Figures, add_record_args, minilm_checkpoint, replicate_collection

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
CHILD = """
import json, resource, sys, time
step, work = sys.argv[1], sys.argv[2]
t = time.perf_counter()
if step == "tokenize":
    from anceflow.tokenize import tokenize_corpus
    tokenize_corpus(f"{work}/prep/collection.parquet", f"{work}/tok", sys.argv[3], max_len=256, progress=False)
elif step == "encode":
    from anceflow.encode import encode_table
    encode_table(sys.argv[3], f"{work}/tok", f"{work}/corpus.0.npy", side="doc", batch_size=64, progress=False)
else:
    from anceflow.index import build_index, save_index
    save_index(build_index([f"{work}/corpus.0.npy"], index_type=step, use_gpu=False, progress=False),
               f"{work}/{step}.faiss")
print(json.dumps({"seconds": time.perf_counter() - t,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""
STEPS = ("tokenize", "encode", "flat", "ivf_flat")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=str(SCIFACT))
    ap.add_argument("--factors", type=int, nargs="+", default=[1, 2, 4])
    add_record_args(ap)
    args = ap.parse_args()
    import numpy as np

    from anceflow.prepare import prepare_local

    out = Figures("scaling", "Scaling: encoding and indexing at 1x, 2x, 4x SciFact")
    out(f"all-MiniLM-L6-v2, max length 256, encode batch 64, precision auto; {', '.join(STEPS)} each in a fresh process")
    out(f"  {'size':<5} {'docs':>7} {'tokens':>10}  " + "  ".join(f"{s + ' s':>11} {'MB':>6}" for s in STEPS))
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "ckpt"
        minilm_checkpoint(ckpt, MODEL)
        for factor in args.factors:
            work = Path(tmp) / f"x{factor}"
            replicate_collection(Path(args.dataset), work / "src", factor)
            prepare_local(work / "src", work / "prep", ["dev"], progress=False)
            row = {}
            for step in STEPS:
                arg = MODEL if step == "tokenize" else str(ckpt)
                done = subprocess.run([sys.executable, "-c", CHILD, step, str(work), arg], capture_output=True,
                                      text=True, check=True, cwd=REPO)
                row[step] = json.loads(done.stdout.strip().splitlines()[-1])
            lengths = np.load(work / "tok.lengths.npy")
            rows[factor] = row
            out(f"  {factor}x{'':<3} {len(lengths):>7,} {int(lengths.sum()):>10,}  " + "  ".join(
                f"{row[s]['seconds']:11.1f} {row[s]['peak_rss_mb']:6.0f}" for s in STEPS))
    first = min(rows)
    out(f"time relative to {first}x (linear growth = the size factor):")
    for factor, row in rows.items():
        out(f"  {factor}x: " + "  ".join(f"{s} {row[s]['seconds'] / rows[first][s]['seconds']:.2f}" for s in STEPS))
    out.record(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
