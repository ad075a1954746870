"""Evaluate TREC runs with pytrec_eval: MRR@10, NDCG@10, Recall@100/1000, ANCE's hole rate@10 and
MRR@100 (MS MARCO document ranking's official measure).

Conventions (those of trec_eval, so figures match published ones):
- the queries evaluated are those with at least one judgment >= ``relevance_level``;
  a query missing from the run scores 0 (trec_eval's ``-c``);
- a run is ranked by score, ties broken by docid in descending order, as trec_eval does,
  whatever ranks the file states; MRR@10 and hole@10 use that same order;
- NDCG uses the graded judgments as gains; MRR and recall count grades >= relevance_level;
- hole@10 (ANCE) is the share of a query's top-10 results with no judgment at all.

``metrics.tsv`` keeps its first eight columns (system, split, queries, mrr@10, ndcg@10,
recall@100, recall@1000, hole@10); later columns: mrr@100, and ranking (``full``: the whole
collection searched; ``rerank``: the split's candidate list, e.g. MS MARCO's top1000.dev, re-scored).
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd
import pytrec_eval

from anceflow.errors import InputError
from anceflow.io import atomic_path

METRICS = ["mrr@10", "ndcg@10", "recall@100", "recall@1000", "hole@10", "mrr@100"]
SUMMARY_COLUMNS = ["system", "split", "queries", *METRICS, "ranking"]

Run = dict[str, dict[str, float]]
Qrels = dict[str, dict[str, int]]


def read_run(path: str | Path) -> Run:
    """A TREC run file ``qid Q0 pid rank score tag`` -> {qid: {pid: score}}."""
    run: Run = defaultdict(dict)
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 6:
                raise InputError(path, f"expected 6 fields (qid Q0 pid rank score tag), found {len(fields)}", lineno)
            try:
                run[fields[0]][fields[2]] = float(fields[4])
            except ValueError:
                raise InputError(path, f"score must be a number, found {fields[4]!r}", lineno) from None
    return dict(run)


def ranked(scores: dict[str, float]) -> list[tuple[str, float]]:
    """(pid, score) sorted the way trec_eval ranks them: score descending, then pid descending."""
    return sorted(scores.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)


def write_run(path: str | Path, run: Run, tag: str, depth: int | None = None) -> None:
    """Write {qid: {pid: score}} as a TREC run, in trec_eval's ranking order."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for qid in run:
            for rank, (pid, score) in enumerate(ranked(run[qid])[:depth], 1):
                fh.write(f"{qid} Q0 {pid} {rank} {score:.6f} {tag}\n")


def read_qrels(path: str | Path) -> Qrels:
    """Prepared ``qrels.<split>.parquet`` -> {qid: {pid: rel}}."""
    df = pd.read_parquet(path, columns=["qid", "pid", "rel"])
    qrels: Qrels = defaultdict(dict)
    for qid, pid, rel in zip(df["qid"], df["pid"], df["rel"]):
        qrels[qid][pid] = int(rel)
    return dict(qrels)


def evaluate_run(run: Run, qrels: Qrels, *, relevance_level: int = 1) -> pd.DataFrame:
    """Per-query metrics, one row per evaluated query (see the module docstring)."""
    qrels = {q: r for q, r in qrels.items() if any(v >= relevance_level for v in r.values())}
    run = {q: run.get(q, {}) for q in qrels}
    top = {q: ranked(docs)[:100] for q, docs in run.items()}
    top10 = {q: dict(hits[:10]) for q, hits in top.items()}
    full = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.100,1000"}, relevance_level=relevance_level)
    rr = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}, relevance_level=relevance_level)
    # pytrec_eval skips queries without results; they stay at 0 below (trec_eval -c).
    scored = full.evaluate({q: d for q, d in run.items() if d})
    scored10 = rr.evaluate({q: d for q, d in top10.items() if d})
    scored100 = rr.evaluate({q: dict(hits) for q, hits in top.items() if hits})
    rows = []
    for qid in sorted(qrels):
        m = scored.get(qid, {})
        judged = qrels[qid]
        first10 = top10[qid]
        rows.append({
            "qid": qid,
            "mrr@10": scored10.get(qid, {}).get("recip_rank", 0.0),
            "ndcg@10": m.get("ndcg_cut_10", 0.0),
            "recall@100": m.get("recall_100", 0.0),
            "recall@1000": m.get("recall_1000", 0.0),
            "hole@10": sum(pid not in judged for pid in first10) / len(first10) if first10 else math.nan,
            "mrr@100": scored100.get(qid, {}).get("recip_rank", 0.0),
        })
    return pd.DataFrame(rows, columns=["qid", *METRICS])


def summarize(per_query: pd.DataFrame, system: str, split: str, ranking: str = "full") -> dict:
    """One metrics.tsv row: means over the evaluated queries (hole@10 over queries with results)."""
    row = {"system": system, "split": split, "queries": len(per_query)}
    for metric in METRICS:
        value = per_query[metric].mean() if len(per_query) else math.nan
        row[metric] = round(float(value), 4)
    row["ranking"] = ranking
    return row


def write_metrics(path: str | Path, rows: Iterable[dict]) -> None:
    """The summary table ``metrics.tsv``: one row per (system, split)."""
    df = pd.DataFrame(list(rows), columns=SUMMARY_COLUMNS)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format="%.4f")


def rerank(candidates: dict[str, list[str]], score: Callable[[str, list[str]], Iterable[float]]) -> Run:
    """Re-score a candidate list (e.g. BM25 top-1000) with ``score(qid, pids)`` -> a run.

    Reranking evaluation (MS MARCO's official dev setting) ranks only each query's candidates;
    full ranking searches the whole collection.
    """
    return {qid: dict(zip(pids, map(float, score(qid, pids)))) for qid, pids in candidates.items()}


def read_candidates(path: str | Path) -> dict[str, list[str]]:
    """Prepared ``candidates.<split>.parquet`` -> {qid: [pid, ...]} in rank order."""
    df = pd.read_parquet(path, columns=["qid", "pid", "rank"]).sort_values(["qid", "rank"], kind="stable")
    out: dict[str, list[str]] = defaultdict(list)
    for qid, pid in zip(df["qid"], df["pid"]):
        out[qid].append(pid)
    return dict(out)
