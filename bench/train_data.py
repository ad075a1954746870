"""Training data at MS MARCO's size: building the examples and drawing micro-batches.

Synthetic inputs shaped like the passage preset's round 0: 8,841,823 passages, 502,939 judged
training queries with 532,761 (query, positive) pairs (MS MARCO's qrels.train), 20 negatives each
(10.66M examples of one negative). Prints the time and peak memory of building the examples
(``anceflow.train.build_examples``: parquet in, int64 array out) and the time per
``micro_batch`` call (batch 64), including the first call of each epoch, which draws its
permutation.

    python bench/train_data.py [--scale 1.0]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from common import Figures, add_record_args


def write_inputs(folder: Path, passages: int, queries: int, pairs: int, negatives: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    pids = pa.array([str(i) for i in range(passages)])
    qids = pa.array([str(10_000_000 + i) for i in range(queries)])
    pq.write_table(pa.table({"row": np.arange(passages), "pid": pids}), folder / "corpus.rows.parquet")
    pq.write_table(pa.table({"row": np.arange(queries), "qid": qids}), folder / "queries.rows.parquet")
    for prefix, n in (("corpus", passages), ("queries", queries)):  # TokenTable needs lengths and tokens
        np.save(folder / f"{prefix}.lengths.npy", np.ones(n, dtype=np.int32))
        np.save(folder / f"{prefix}.tokens.npy", np.zeros(n, dtype=np.int32))
    q = np.sort(np.r_[np.arange(queries), rng.integers(0, queries, pairs - queries)])
    neg = rng.integers(0, passages, size=(pairs, negatives))
    offsets = pa.array(np.arange(0, pairs * negatives + 1, negatives, dtype=np.int32))
    table = pa.table({"qid": qids.take(pa.array(q)), "pos_pid": pids.take(pa.array(rng.integers(0, passages, pairs))),
                      "neg_pids": pa.ListArray.from_arrays(offsets, pids.take(pa.array(neg.ravel())))})
    pq.write_table(table, folder / "negatives.parquet")
    return {"negatives": folder / "negatives.parquet", "queries": folder / "queries", "corpus": folder / "corpus"}


def measure(folder: Path, batch: int) -> dict:
    """In a fresh process: build the examples and time micro_batch (its peak RSS is its own)."""
    from anceflow.train import TrainingData, build_examples

    t = time.perf_counter()
    examples = build_examples(folder / "negatives.parquet", folder / "queries", folder / "corpus", 1)
    built = time.perf_counter() - t
    data = TrainingData(examples, folder / "queries", folder / "corpus", seed=42)
    per_epoch = len(data) // batch
    times = {}
    for m in [0, 1, 2, 3, per_epoch - 1, per_epoch, per_epoch + 1, per_epoch + 2]:
        t = time.perf_counter()
        data.micro_batch(m, batch)
        times[m] = time.perf_counter() - t
    return {"examples": len(examples), "build_s": built, "per_epoch": per_epoch,
            "first": [dt for m, dt in times.items() if m % per_epoch == 0],
            "steady": [dt for m, dt in times.items() if m % per_epoch != 0],
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of MS MARCO's size")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    add_record_args(ap)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child), args.batch)))
        return 0
    passages, queries, pairs = (int(x * args.scale) for x in (8_841_823, 502_939, 532_761))
    out = Figures("train-data", "Training data at MS MARCO's size: examples and micro-batches")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        write_inputs(Path(tmp), passages, queries, pairs, 20)
        out(f"synthetic inputs: {passages:,} passages, {queries:,} queries, {pairs:,} pairs x 20 negatives "
            f"(written in {time.perf_counter() - t:.0f} s)")
        r = json.loads(subprocess.run([sys.executable, __file__, "--child", tmp, "--batch", str(args.batch)],
                                      capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    out(f"build_examples: {r['examples']:,} examples in {r['build_s']:.1f} s; the process's peak RSS "
        f"{r['peak_mb']:,.0f} MB")
    out(f"micro_batch (batch {args.batch}, {r['per_epoch']:,} per epoch): {np.median(r['steady']) * 1e3:.3f} ms per "
        f"call (median of {len(r['steady'])}); the first call of an epoch draws its permutation: "
        f"{', '.join(f'{dt:.2f}' for dt in r['first'])} s")
    out.record(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
