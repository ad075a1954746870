"""False-negative controls and the audit at MS MARCO's size: time and peak memory of one round.

Synthetic inputs with MS MARCO passage's counts (bench/negatives_size.py's: 8,841,823 passages,
808,731 training queries, 502,939 judged with 532,761 positives, top-200 int32 rows), plus what a
mining checkpoint's search now writes besides the rows: float16 scores [808,731 x 200] (decreasing
along each row) and every positive's score. Each measurement runs in a fresh process (peak RSS):

1. ``make_negatives`` from the rows alone (mining before this change);
2. with the scores and the positives' scores (what the workflow runs by default now: the same
   draws, plus the score-gap statistics);
3. with a rank window [10, 200) and a relative margin of 0.05 (positives score at the 20th
   percentile of their query's top-200 here, so the margin drops a good share);
4. the audit (``anceflow.audit.audit``) of the 10.6M negatives of (2) against their query's
   positives, over a synthetic tokenized corpus of ``--audit-docs`` rows of ~``--tokens``
   tokens (MS MARCO passages: ~70 with BERT's tokenizer); its cost follows the number of
   comparisons and their length, not the corpus size.

    python bench/controls_size.py [--scale 1.0] [--audit-docs 1000000] [--tokens 70]
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
from negatives_size import write_inputs


def write_scores(folder: Path, queries: int, depth: int) -> None:
    """Scores decreasing along each row, and every judged positive's score (about the 20th percentile of its
    query's top-200, so some of the top candidates score above it)."""
    rng = np.random.default_rng(1)
    scores = np.lib.format.open_memmap(folder / "scores.npy", mode="w+", dtype=np.float16, shape=(queries, depth))
    for start in range(0, queries, 50_000):
        block = rng.normal(0.5, 0.1, size=(min(50_000, queries - start), depth)).astype(np.float32)
        scores[start:start + len(block)] = -np.sort(-block, axis=1)
    scores.flush()
    qrels = pq.read_table(folder / "qrels.parquet")
    qids = pq.read_table(folder / "queries.parquet", columns=["qid"]).column("qid").to_numpy(zero_copy_only=False)
    position = {q: i for i, q in enumerate(qids.tolist())}
    q = np.array([position[x] for x in qrels.column("qid").to_pylist()])
    d = np.array(qrels.column("pid").to_pylist(), dtype=np.int64)
    positive = np.asarray(scores[q, depth // 5], dtype=np.float32)
    pq.write_table(pa.table({"query": q.astype(np.int32), "doc": d.astype(np.int32), "score": positive}),
                   folder / "positives.parquet")


def write_tokens(folder: Path, docs: int, tokens: int) -> None:
    rng = np.random.default_rng(2)
    lengths = rng.integers(tokens // 2, tokens * 3 // 2, size=docs).astype(np.int32)
    np.save(folder / "corpus.lengths.npy", lengths)
    out = np.lib.format.open_memmap(folder / "corpus.tokens.npy", mode="w+", dtype=np.int32, shape=(int(lengths.sum()),))
    for start in range(0, len(out), 50_000_000):
        # Zipf-like ids as real text has: a few frequent tokens, a long tail.
        out[start:start + 50_000_000] = np.minimum(rng.zipf(1.3, size=min(50_000_000, len(out) - start)), 30_000)
    out.flush()


def measure(folder: Path, what: str, docs: int) -> dict:
    from anceflow.negatives import Judged, Negatives, make_negatives
    from anceflow.runs import read_ids

    t = time.perf_counter()
    kw = {}
    if what in ("scores", "controls"):
        kw = {"scores": folder / "scores.npy", "positives": folder / "positives.parquet"}
    if what == "controls":
        kw.update(window=(10, 200), relative_margin=0.05)
    if what == "audit":
        from anceflow.audit import audit
        from anceflow.tokenize import TokenTable

        qids, pids = read_ids(folder / "queries.parquet", "qid"), read_ids(folder / "collection.parquet", "pid")
        negatives = Negatives.read(folder / "scores.negatives.parquet", qids, pids)
        judged = Judged.read(folder / "qrels.parquet", qids, pids)
        doc_rows = (np.arange(len(pids)) % docs)[:, None]  # passages share the synthetic corpus' token rows
        t = time.perf_counter()
        figures = audit(negatives, judged, TokenTable.open(folder / "corpus"), doc_rows, threshold=0.8)
        return {"seconds": time.perf_counter() - t, "negatives": figures["negatives"],
                "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    stats = make_negatives(folder / "run.npy", folder / "queries.parquet", folder / "collection.parquet",
                           folder / "qrels.parquet", folder / f"{what}.negatives.parquet", n=20, seed=42, depth=200,
                           round_=1, **kw)
    return {"seconds": time.perf_counter() - t, "examples": stats["examples"], "pairs_short": stats.get("pairs_short"),
            "dropped": stats.get("margin_dropped_share"), "mean": stats["mean_negatives"],
            "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of MS MARCO's size")
    ap.add_argument("--audit-docs", type=int, default=1_000_000)
    ap.add_argument("--tokens", type=int, default=70)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    add_record_args(ap)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(Path(args.child[0]), args.child[1], int(args.child[2]))))
        return 0
    passages, queries, judged, positives = (int(x * args.scale) for x in (8_841_823, 808_731, 502_939, 532_761))
    docs = min(args.audit_docs, passages)
    out = Figures("controls-size", "False-negative controls and the audit at MS MARCO's size")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        write_inputs(Path(tmp), passages, queries, judged, positives, 200, 0)
        write_scores(Path(tmp), queries, 200)
        write_tokens(Path(tmp), docs, args.tokens)
        out(f"synthetic inputs: {passages:,} passages, {queries:,} training queries ({judged:,} judged, {positives:,} "
            f"positives), top-200 rows and float16 scores ({queries * 200 * 2 / 1e6:,.0f} MB); a tokenized corpus of "
            f"{docs:,} rows of ~{args.tokens} tokens for the audit ({time.perf_counter() - t:.0f} s to write)")

        def child(what: str) -> dict:
            return json.loads(subprocess.run([sys.executable, __file__, "--child", tmp, what, str(docs)],
                                             capture_output=True, text=True, check=True).stdout.splitlines()[-1])

        for what, label in (("plain", "rows only (mining before the controls)"),
                            ("scores", "rows + scores (the default now: same draws, score-gap statistics)"),
                            ("controls", "rank window [10, 200) + relative margin 0.05")):
            r = child(what)
            extra = (f"; margin dropped {r['dropped']:.1%} of the candidates, {r['pairs_short']:,} pairs short of 20, "
                     f"mean {r['mean']:.1f}") if r.get("dropped") is not None else ""
            out(f"make_negatives, {label}: {r['examples']:,} pairs in {r['seconds']:.0f} s, peak RSS "
                f"{r['peak_mb']:,.0f} MB{extra}")
        r = child("audit")
        out(f"audit of {r['negatives']:,} negatives (near-duplicates, positives of other queries): {r['seconds']:.0f} s, "
            f"peak RSS {r['peak_mb']:,.0f} MB")
    out.record(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
