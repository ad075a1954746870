"""BM25: our batch retrieval vs Pyserini's one-query-at-a-time ``LuceneSearcher.search`` loop.

Both search the same Lucene index of SciFact's prepared collection (built once here with our
``anceflow.bm25.build_index``, timed) with the same BM25 parameters (k1 0.9, b 0.4) for the
top 1000 of SciFact's dev and train queries:

- ours: ``anceflow.bm25.search``, Anserini's SearchCollection in one JVM with --threads
  threads writing a TREC run (the time includes starting the JVM, as a workflow job pays it);
- pyserini: ``LuceneSearcher(index).search(query, k=1000)`` for each query in a Python loop
  (JVM start and searcher open excluded, so the figure favours pyserini).

Alternating, best of --repeats. Prints queries/s for each, the ratio, and how far the two runs
agree (the share of identical top-10 document lists).

    python bench/bm25.py [--threads 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
from importlib import metadata
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from common import Figures, parse_args, results_dir, run_targets


def read_run_top(path: Path, k: int) -> dict[str, list[str]]:
    run = pd.read_csv(path, sep=r"\s+", header=None, names=["qid", "q0", "pid", "rank", "score", "tag"],
                      dtype={"qid": str, "pid": str})
    return {q: g.sort_values("rank")["pid"].head(k).tolist() for q, g in run.groupby("qid")}


def main() -> int:
    def extra(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--threads", type=int, default=2)
        ap.add_argument("--hits", type=int, default=1000)
        ap.add_argument("--repeats", type=int, default=2)

    args = parse_args(__doc__, extra)
    from anceflow import bm25
    from anceflow.java import import_pyserini

    prepared = run_targets(args, f"{results_dir(args)}/prepared/stats.json") / "prepared"
    queries = pd.concat([pd.read_parquet(prepared / f"queries.{s}.parquet") for s in ("dev", "train")])
    out = Figures("bm25", "BM25: Anserini batch retrieval (ours) vs Pyserini's search loop")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        queries.to_parquet(tmp / "queries.parquet", index=False)
        t = time.perf_counter()
        bm25.build_index(prepared / "collection.parquet", tmp / "index", threads=args.threads, progress=False)
        build = time.perf_counter() - t
        n_docs = pd.read_parquet(prepared / "collection.parquet", columns=["pid"]).shape[0]
        out(f"index build (ours, Anserini IndexCollection, {args.threads} threads): {n_docs:,} documents in "
            f"{build:.1f} s")

        import_pyserini()  # sets up Java and pyserini's import-time needs
        from pyserini.search.lucene import LuceneSearcher

        t = time.perf_counter()
        searcher = LuceneSearcher(str(tmp / "index/lucene"))
        searcher.set_bm25(0.9, 0.4)
        opened = time.perf_counter() - t
        texts = [" ".join(x.split()) for x in queries["text"]]
        times = {"ours": [], "pyserini": []}
        for _ in range(args.repeats):
            t = time.perf_counter()
            bm25.search(tmp / "index", tmp / "queries.parquet", tmp / "ours.run", k1=0.9, b=0.4, hits=args.hits,
                        threads=args.threads)
            times["ours"].append(time.perf_counter() - t)
            t = time.perf_counter()
            theirs = {qid: [h.docid for h in searcher.search(text, k=args.hits)]
                      for qid, text in zip(queries["qid"], texts)}
            times["pyserini"].append(time.perf_counter() - t)
        ours_top = read_run_top(tmp / "ours.run", 10)
        same = sum(ours_top.get(q, []) == hits[:10] for q, hits in theirs.items()) / len(theirs)

    n = len(queries)
    out(f"{n:,} queries (SciFact dev + train), top {args.hits}, k1 0.9 b 0.4; best of {args.repeats}")
    for who, label in (("ours", f"ours (SearchCollection, {args.threads} threads, incl. JVM start)"),
                       ("pyserini", f"pyserini {metadata.version('pyserini')} LuceneSearcher.search loop")):
        best = min(times[who])
        out(f"{label:<58} {best:6.2f} s  {n / best:8.1f} queries/s")
    out(f"  (pyserini's JVM start and searcher open, not counted above: {opened:.1f} s)")
    out(f"ours / pyserini = {min(times['pyserini']) / min(times['ours']):.2f}x; identical top-10 lists: {same:.1%}")
    out.record(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
