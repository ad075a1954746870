"""Negatives: sample hard negatives for each training (query, positive) pair from a ranked run.

Round 0 samples from the BM25 top-k; round n >= 1 (ANCE) from the top-k of a dense run made
with an earlier checkpoint ("mining"). A negative is never a judged positive of its query.
Each query draws from its own random stream, seeded by (seed, round, qid), so a query's
negatives do not depend on which other queries are present or on their order.

Everything works on arrays (see ``anceflow.runs``): the run is int32 collection rows
``[queries, k]``, judgments and negatives are integer rows too, and ids are strings only in
the files. At MS MARCO's size (503k judged queries x top-200, 10.6M negatives) a round's
mining holds ~0.4 GB of run plus ~0.2 GB of judgments and output, not tens of GB of dicts.
"""

from __future__ import annotations

import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from anceflow.errors import InputError
from anceflow.io import atomic_path
from anceflow.runs import id_rank, load_rows, lookup, read_ids, read_trec_rows

SCHEMA = pa.schema([("qid", pa.string()), ("pos_pid", pa.string()), ("neg_pids", pa.list_(pa.string()))])


def query_rng(seed: int, qid: str, round_: int = 0) -> np.random.Generator:
    return np.random.default_rng([seed, round_, zlib.crc32(qid.encode("utf-8"))])


@dataclass
class Judged:
    """A split's judged queries in qid order, each with its positives (grade > 0) in pid order.

    ``queries[j]`` is a position in the split's query list; its positives are
    ``positives[offsets[j]:offsets[j + 1]]``, collection rows. A query whose judgments are all
    0 has no positives (it is counted, never sampled for).
    """

    queries: np.ndarray
    offsets: np.ndarray
    positives: np.ndarray

    @classmethod
    def from_arrays(cls, q: np.ndarray, d: np.ndarray, rel: np.ndarray, qids: pa.Array, pids: pa.Array) -> "Judged":
        order = np.lexsort((id_rank(pids)[d], id_rank(qids)[q]))
        q, d, rel = q[order], d[order], rel[order]
        first = np.r_[True, q[1:] != q[:-1]] if len(q) else np.zeros(0, dtype=bool)
        queries = q[first]
        group = np.cumsum(first) - 1
        positive = rel > 0
        counts = np.bincount(group[positive], minlength=len(queries))
        return cls(queries, np.r_[0, np.cumsum(counts)].astype(np.int64), d[positive])

    @classmethod
    def read(cls, qrels: str | Path, qids: pa.Array, pids: pa.Array) -> "Judged":
        table = pq.read_table(qrels, columns=["qid", "pid", "rel"])
        q = lookup(table.column("qid").combine_chunks(), qids, what="qid", source=qrels, where="the queries")
        d = lookup(table.column("pid").combine_chunks(), pids, what="pid", source=qrels, where="the collection")
        return cls.from_arrays(q, d, table.column("rel").to_numpy(), qids, pids)

    def __len__(self) -> int:
        return len(self.queries)

    def select(self, keep: np.ndarray) -> "Judged":
        """The judged queries at sorted positions ``keep``."""
        counts = np.diff(self.offsets)[keep]
        index = np.concatenate([np.arange(self.offsets[j], self.offsets[j + 1]) for j in keep]) if len(keep) else \
            np.zeros(0, dtype=np.int64)
        return Judged(self.queries[keep], np.r_[0, np.cumsum(counts)].astype(np.int64), self.positives[index])


def select_queries(judged: Judged, fraction: float, seed: int, round_: int, mode: str = "random") -> Judged:
    """The training queries round ``round_`` mines when only a ``fraction`` is mined per round.

    ``random``: a seeded random share, drawn anew each round. ``rotating`` (the reference's
    ``ann_chunk_factor``, microsoft/ANCE drivers/run_ann_data_gen.py): the judged queries in the
    split's order cut into k = round(1 / fraction) consecutive slices, round n taking slice
    (n - 1) mod k, the last slice taking the remainder, so k rounds cover every query once.
    """
    if fraction >= 1.0:
        return judged
    if mode == "rotating":
        k = max(1, round(1 / fraction))
        in_order = np.argsort(judged.queries, kind="stable")  # the split's (file) order, not qid order
        per, index = len(judged) // k, (round_ - 1) % k
        end = len(judged) if index == k - 1 else per * (index + 1)
        return judged.select(np.sort(in_order[per * index:end]))
    if mode != "random":
        raise ValueError(f"query selection must be 'random' or 'rotating', not {mode!r}")
    keep = np.random.default_rng([seed, round_, 1]).permutation(len(judged))[: max(1, round(fraction * len(judged)))]
    return judged.select(np.sort(keep))


@dataclass
class Negatives:
    """Sampled negatives as rows: pair i is (query ``queries[i]``, positive ``positives[i]``) with
    negatives ``negatives[offsets[i]:offsets[i + 1]]``; queries index the split, the rest the collection."""

    queries: np.ndarray
    positives: np.ndarray
    offsets: np.ndarray
    negatives: np.ndarray

    def __len__(self) -> int:
        return len(self.queries)

    def to_table(self, qids: pa.Array, pids: pa.Array) -> pa.Table:
        negs = pa.ListArray.from_arrays(pa.array(self.offsets, pa.int32()), pids.take(pa.array(self.negatives)))
        return pa.Table.from_arrays([qids.take(pa.array(self.queries)), pids.take(pa.array(self.positives)), negs],
                                    schema=SCHEMA)

    @classmethod
    def read(cls, path: str | Path, qids: pa.Array, pids: pa.Array, *, queries: str = "the training queries",
             collection: str = "the collection") -> "Negatives":
        """Read a negatives parquet; ``queries``/``collection`` name the id lists in errors."""
        table = pq.read_table(path)
        negs = table.column("neg_pids").combine_chunks()
        return cls(lookup(table.column("qid").combine_chunks(), qids, what="qid", source=path, where=queries),
                   lookup(table.column("pos_pid").combine_chunks(), pids, what="pid", source=path, where=collection),
                   negs.offsets.to_numpy().astype(np.int64) - negs.offsets[0].as_py(),
                   lookup(negs.flatten(), pids, what="pid", source=path, where=collection))


def write_negatives(table, path: str | Path) -> None:
    """Write negatives (an Arrow table or a DataFrame with qid, pos_pid, neg_pids) as parquet."""
    if not isinstance(table, pa.Table):
        table = pa.Table.from_pandas(table, schema=SCHEMA, preserve_index=False)
    with atomic_path(path) as tmp:
        pq.write_table(table.cast(SCHEMA), tmp)


def sample_negatives(rows: np.ndarray, qids: list[str], judged: Judged, *, n: int, seed: int,
                     depth: int | None = None, round_: int = 0) -> tuple[Negatives, dict]:
    """For each judged (query, positive) pair, ``n`` collection rows drawn uniformly without
    replacement from the run's top ``depth`` (``rows[query]``, -1 = no hit) excluding every
    judged positive of that query (fewer if fewer remain).

    Returns (negatives, statistics). ``stats["positive_ranks"]`` lists, per query with a positive,
    the 1-based rank of its best-ranked positive in the top ``depth`` (0 if absent).
    """
    stats = {"pairs": 0, "pairs_without_negatives": 0, "queries_missing_from_run": 0, "positives_in_topk": 0}
    # Machine integers, not Python objects: MS MARCO's 10.6M picks are 85 MB here, ~380 MB in a list.
    out_q, out_pos, counts, picked, ranks = (array("q") for _ in range(5))
    for j, qi in enumerate(judged.queries.tolist()):
        positives = judged.positives[judged.offsets[j]:judged.offsets[j + 1]].tolist()
        if not positives:
            continue
        top = rows[qi, :depth].tolist() if depth else rows[qi].tolist()
        top = [d for d in top if d >= 0]
        if not top:
            stats["queries_missing_from_run"] += 1
        pos_set = set(positives)
        pool = [d for d in top if d not in pos_set]
        stats["positives_in_topk"] += len(top) - len(pool)
        ranks.append(next((i + 1 for i, d in enumerate(top) if d in pos_set), 0))
        rng = query_rng(seed, qids[qi], round_)
        for pos in positives:
            stats["pairs"] += 1
            if not pool:
                stats["pairs_without_negatives"] += 1
                continue
            picks = rng.choice(len(pool), size=min(n, len(pool)), replace=False)
            out_q.append(qi)
            out_pos.append(pos)
            counts.append(len(picks))
            picked.extend(pool[i] for i in picks)
    negatives = Negatives(np.frombuffer(out_q, dtype=np.int64), np.frombuffer(out_pos, dtype=np.int64),
                          np.r_[0, np.cumsum(np.frombuffer(counts, dtype=np.int64))],
                          np.frombuffer(picked, dtype=np.int64))
    stats["examples"] = len(negatives)
    stats["mean_negatives"] = float(np.mean(counts)) if counts else 0.0
    stats["positive_ranks"] = list(ranks)
    return negatives, stats


def overlap_with(now: Negatives, previous: Negatives, n_docs: int) -> float | None:
    """Mean share of this round's negatives that the previous round also had, per (query, positive)
    pair present in both rounds (pairs without negatives are left out)."""
    pairs = np.concatenate([now.queries * n_docs + now.positives, previous.queries * n_docs + previous.positives])
    _, code = np.unique(pairs, return_inverse=True)
    now_code, prev_code = code[: len(now)], code[len(now):]

    def long(neg: Negatives, codes: np.ndarray) -> np.ndarray:
        return np.repeat(codes, np.diff(neg.offsets)) * n_docs + neg.negatives

    shared = np.isin(long(now, now_code), long(previous, prev_code))
    counts = np.diff(now.offsets)
    hits = np.bincount(np.repeat(np.arange(len(now)), counts), weights=shared, minlength=len(now))
    both = np.isin(now_code, prev_code) & (counts > 0)
    return float(np.mean(hits[both] / counts[both])) if both.any() else None


def mine(rows: np.ndarray, qids: list[str], judged: Judged, *, n: int, seed: int, depth: int, round_: int,
         query_fraction: float = 1.0, query_selection: str = "random", previous: Negatives | None = None,
         n_docs: int | None = None) -> tuple[Negatives, dict]:
    """Negatives of one round plus its diagnostics (see README, "ANCE rounds")."""
    chosen = select_queries(judged, query_fraction, seed, round_, query_selection)
    negatives, stats = sample_negatives(rows, qids, chosen, n=n, seed=seed, depth=depth, round_=round_)
    found = [r for r in stats.pop("positive_ranks") if r > 0]
    if previous is not None and n_docs is None:
        raise ValueError("overlap with the previous round needs n_docs (the collection size)")
    stats.update({
        "round": round_,
        "queries": len(chosen),
        "positives_removed": stats.pop("positives_in_topk"),
        "queries_with_positive_in_topk": len(found),
        "positive_rank_mean": float(np.mean(found)) if found else None,
        "positive_rank_median": float(np.median(found)) if found else None,
        "overlap_with_previous": overlap_with(negatives, previous, n_docs) if previous is not None else None,
    })
    return negatives, stats


def make_negatives(run: str | Path, queries: str | Path, collection: str | Path, qrels: str | Path,
                   out: str | Path, *, n: int, seed: int, depth: int, round_: int, query_fraction: float = 1.0,
                   query_selection: str = "random", previous: str | Path | None = None) -> dict:
    """One round's negatives file from a run: a TREC file (BM25) or int32 rows (``.npy``, dense)."""
    qids, pids = read_ids(queries, "qid"), read_ids(collection, "pid")
    rows = load_rows(run) if str(run).endswith(".npy") else read_trec_rows(run, qids, pids, depth)
    if len(rows) != len(qids):
        raise InputError(run, f"has {len(rows)} query rows, {queries} has {len(qids)} queries")
    before = Negatives.read(previous, qids, pids) if previous else None
    negatives, stats = mine(rows, qids.to_pylist(), Judged.read(qrels, qids, pids), n=n, seed=seed, depth=depth,
                            round_=round_, query_fraction=query_fraction, query_selection=query_selection,
                            previous=before, n_docs=len(pids))
    write_negatives(negatives.to_table(qids, pids), out)
    return stats
