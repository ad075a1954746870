"""Mining at MS MARCO's size: peak memory and time of one round's negatives.

Synthetic inputs with MS MARCO passage's counts: 8,841,823 passages, 808,731 training queries
(all of queries.train.tsv, as if dataset.keep_unjudged were on) of which 502,939 are judged with
532,761 positive judgments, and a dense run of the top 200 for every query (int32 rows, what a
mining checkpoint's search writes: 647 MB). ``anceflow.negatives.make_negatives`` samples 20
negatives per (query, positive) from it in a fresh process, whose peak RSS is reported; a BM25-style
TREC run of ``--trec-queries`` of the queries is timed too (the streaming reader).

    python bench/negatives_size.py [--scale 1.0] [--trec-queries 100000]
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


def write_inputs(folder: Path, passages: int, queries: int, judged: int, positives: int, depth: int,
                 trec_queries: int) -> None:
    rng = np.random.default_rng(0)
    pids = pa.array([str(i) for i in range(passages)])
    qids = pa.array([str(10_000_000 + i) for i in range(queries)])
    pq.write_table(pa.table({"pid": pids, "text": pa.nulls(passages, pa.string())}), folder / "collection.parquet")
    pq.write_table(pa.table({"qid": qids, "text": pa.nulls(queries, pa.string())}), folder / "queries.parquet")
    judged_q = np.sort(rng.choice(queries, judged, replace=False))
    q = np.sort(np.r_[judged_q, rng.choice(judged_q, positives - judged)])
    pq.write_table(pa.table({"qid": qids.take(pa.array(q)), "pid": pids.take(pa.array(rng.integers(0, passages, len(q)))),
                             "rel": np.ones(len(q), dtype=np.int32)}), folder / "qrels.parquet")
    rows = np.lib.format.open_memmap(folder / "run.npy", mode="w+", dtype=np.int32, shape=(queries, depth))
    for start in range(0, queries, 50_000):
        rows[start:start + 50_000] = rng.integers(0, passages, size=(min(50_000, queries - start), depth))
    rows.flush()
    with open(folder / "run.trec", "w") as fh:
        for i in range(trec_queries):
            fh.writelines(f"{10_000_000 + i} Q0 {d} {r} {100 - r * 0.1:.4f} bm25\n"
                          for r, d in enumerate(rows[i].tolist(), 1))


def measure(folder: Path, run: str, depth: int) -> dict:
    from anceflow.negatives import make_negatives

    t = time.perf_counter()
    stats = make_negatives(folder / run, folder / "queries.parquet", folder / "collection.parquet",
                           folder / "qrels.parquet", folder / f"{run}.negatives.parquet", n=20, seed=42, depth=depth,
                           round_=1)
    return {"seconds": time.perf_counter() - t, "examples": stats["examples"],
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of MS MARCO's size")
    ap.add_argument("--trec-queries", type=int, default=100_000)
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    add_record_args(ap)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child[0]), args.child[1], 200)))
        return 0
    passages, queries, judged, positives = (int(x * args.scale) for x in (8_841_823, 808_731, 502_939, 532_761))
    trec_queries = min(args.trec_queries, queries)
    out = Figures("negatives-size", "Mining at MS MARCO's size: memory and time of one round's negatives")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        write_inputs(Path(tmp), passages, queries, judged, positives, 200, trec_queries)
        out(f"synthetic inputs: {passages:,} passages, {queries:,} training queries ({judged:,} judged, "
            f"{positives:,} positives), top-200 rows for every query; a TREC run of the first {trec_queries:,} "
            f"queries ({time.perf_counter() - t:.0f} s to write)")
        for run, label in (("run.npy", f"dense rows, {queries:,} x 200"), ("run.trec", f"TREC, {trec_queries:,} x 200")):
            r = json.loads(subprocess.run([sys.executable, __file__, "--child", tmp, run], capture_output=True,
                                          text=True, check=True).stdout.splitlines()[-1])
            out(f"make_negatives from {label}: {r['examples']:,} (query, positive) pairs with 20 negatives in "
                f"{r['seconds']:.0f} s; peak RSS {r['peak_mb']:,.0f} MB")
    out.record(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
