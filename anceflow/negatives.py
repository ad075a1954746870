"""Negatives: sample hard negatives for each training (query, positive) pair from a ranked run.

Round 0 samples from the BM25 top-k; later rounds (ANCE) from the dense top-k. A negative
is never a judged positive of its query. Each query draws from its own random stream,
seeded by (seed, qid), so a query's negatives do not depend on which other queries are
present or on their order.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from anceflow.evaluate import Qrels, ranked, read_run
from anceflow.io import atomic_path


def query_rng(seed: int, qid: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(qid.encode("utf-8"))])


def sample_negatives(run: dict[str, list[str]], qrels: Qrels, *, n: int, seed: int, depth: int | None = None) -> tuple[pd.DataFrame, dict]:
    """For each (qid, positive) pair, ``n`` pids drawn uniformly without replacement from the
    run's top ``depth`` excluding every judged positive of that qid (fewer if fewer remain).

    Returns (rows with columns qid, pos_pid, neg_pids; statistics).
    """
    rows = []
    stats = {"pairs": 0, "pairs_without_negatives": 0, "queries_missing_from_run": 0, "positives_in_topk": 0}
    for qid in sorted(qrels):
        positives = sorted(p for p, rel in qrels[qid].items() if rel > 0)
        if not positives:
            continue
        ranking = run.get(qid)
        if ranking is None:
            stats["queries_missing_from_run"] += 1
            ranking = []
        top = ranking[:depth] if depth else ranking
        pos_set = set(positives)
        pool = [p for p in top if p not in pos_set]
        stats["positives_in_topk"] += len(top) - len(pool)
        rng = query_rng(seed, qid)
        for pos in positives:
            stats["pairs"] += 1
            if not pool:
                stats["pairs_without_negatives"] += 1
                continue
            picks = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
            rows.append({"qid": qid, "pos_pid": pos, "neg_pids": [pool[i] for i in picks]})
    df = pd.DataFrame(rows, columns=["qid", "pos_pid", "neg_pids"])
    stats["examples"] = len(df)
    stats["mean_negatives"] = float(df["neg_pids"].map(len).mean()) if len(df) else 0.0
    return df, stats


def ranked_lists(run_path: str | Path) -> dict[str, list[str]]:
    """A TREC run as {qid: [pid, ...]} in rank order."""
    return {qid: [pid for pid, _ in ranked(scores)] for qid, scores in read_run(run_path).items()}


def write_negatives(df: pd.DataFrame, path: str | Path) -> None:
    schema = pa.schema([("qid", pa.string()), ("pos_pid", pa.string()), ("neg_pids", pa.list_(pa.string()))])
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pandas(df, schema=schema, preserve_index=False), tmp)
