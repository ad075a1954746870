"""Negatives: sample hard negatives for each training (query, positive) pair from a ranked run.

Round 0 samples from the BM25 top-k; round n >= 1 (ANCE) from the top-k of a dense run made
with an earlier checkpoint ("mining"). A negative is never a judged positive of its query.
Each query draws from its own random stream, seeded by (seed, round, qid), so a query's
negatives do not depend on which other queries are present or on their order.
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


def query_rng(seed: int, qid: str, round_: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, round_, zlib.crc32(qid.encode("utf-8"))])


def sample_negatives(run: dict[str, list[str]], qrels: Qrels, *, n: int, seed: int, depth: int | None = None,
                     round_: int = 0) -> tuple[pd.DataFrame, dict]:
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
        rng = query_rng(seed, qid, round_)
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


def select_queries(qrels: Qrels, fraction: float, seed: int, round_: int) -> Qrels:
    """A seeded share of the training queries (ANCE's ann_chunk_factor capped mining cost this way)."""
    if fraction >= 1.0:
        return qrels
    qids = sorted(qrels)
    keep = np.random.default_rng([seed, round_, 1]).permutation(len(qids))[: max(1, round(fraction * len(qids)))]
    return {qids[i]: qrels[qids[i]] for i in sorted(keep)}


def positive_ranks(run: dict[str, list[str]], qrels: Qrels, depth: int) -> list[int | None]:
    """Rank (1-based) of each query's best-ranked judged positive in the top ``depth``; None if absent."""
    ranks = []
    for qid, judged in qrels.items():
        positives = {p for p, rel in judged.items() if rel > 0}
        if not positives:
            continue
        top = run.get(qid, [])[:depth]
        ranks.append(next((i + 1 for i, p in enumerate(top) if p in positives), None))
    return ranks


def overlap_with(df: pd.DataFrame, previous: pd.DataFrame) -> float | None:
    """Mean share of this round's negatives that the previous round also had, per (qid, positive)."""
    before = {(q, p): set(n) for q, p, n in zip(previous["qid"], previous["pos_pid"], previous["neg_pids"])}
    shares = [len(set(n) & before[(q, p)]) / len(n) for q, p, n in zip(df["qid"], df["pos_pid"], df["neg_pids"])
              if (q, p) in before and len(n)]
    return float(np.mean(shares)) if shares else None


def mine(run: dict[str, list[str]], qrels: Qrels, *, n: int, seed: int, depth: int, round_: int,
         query_fraction: float = 1.0, previous: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict]:
    """Negatives of one round plus its diagnostics (see README, "ANCE rounds")."""
    chosen = select_queries(qrels, query_fraction, seed, round_)
    df, stats = sample_negatives(run, chosen, n=n, seed=seed, depth=depth, round_=round_)
    ranks = positive_ranks(run, chosen, depth)
    found = [r for r in ranks if r is not None]
    stats.update({
        "round": round_,
        "queries": len(chosen),
        "positives_removed": stats.pop("positives_in_topk"),
        "queries_with_positive_in_topk": len(found),
        "positive_rank_mean": float(np.mean(found)) if found else None,
        "positive_rank_median": float(np.median(found)) if found else None,
        "overlap_with_previous": overlap_with(df, previous) if previous is not None else None,
    })
    return df, stats
