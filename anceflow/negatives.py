"""Negatives: sample hard negatives for each training (query, positive) pair from a ranked run.

Round 0 samples from the BM25 top-k; round n >= 1 (ANCE) from the top-k of a dense run made
with an earlier checkpoint ("mining"). A negative is never a judged positive of its query.
Each query draws from its own random stream, seeded by (seed, round, qid), so a query's
negatives do not depend on which other queries are present or on their order.

Everything works on arrays (see ``anceflow.runs``): the run is int32 collection rows
``[queries, k]``, judgments and negatives are integer rows too, and ids are strings only in
the files. At MS MARCO's size (503k judged queries x top-200, 10.6M negatives) a round's
mining holds ~0.4 GB of run plus ~0.2 GB of judgments and output, not tens of GB of dicts.

False-negative controls (dense rounds, ``ance.negatives``), all off by default, and then the
draws are exactly those without them:

* **rank window** ``[a, b)``: candidates come only from positions a..b-1 of the run;
* **relative margin** m: a candidate scoring above ``s - |s| * m`` (s: the dense score of the
  pair's own positive, from the mining checkpoint, wherever it ranks) is dropped, as
  sentence-transformers' ``mine_hard_negatives(relative_margin=m)`` does;
* **cross-encoder**: ``ceil(oversample * n)`` candidates are drawn per pair in the seeded order,
  scored by a cross-encoder (:mod:`anceflow.crossencoder`; any callable scoring (query, row)
  pairs), the ones it flags as relevant dropped and the first ``n`` others kept (mode
  ``denoise``); mode ``audit`` draws as without it and only counts what it would flag.

With the mining run's scores the statistics also describe the score gap (positive minus
negative) of the negatives kept.
"""

from __future__ import annotations

import math
import zlib
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

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
    scores: np.ndarray | None = None  # the dense score of each positive (with_scores), aligned with positives

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
        return Judged(self.queries[keep], np.r_[0, np.cumsum(counts)].astype(np.int64), self.positives[index],
                      None if self.scores is None else self.scores[index])

    def pair_queries(self) -> np.ndarray:
        """The query of each positive (aligned with ``positives``)."""
        return np.repeat(self.queries, np.diff(self.offsets))

    def with_scores(self, query: np.ndarray, doc: np.ndarray, score: np.ndarray, *, n_docs: int,
                    source: str | Path = "the positives' scores") -> "Judged":
        """These judgments with each positive's score looked up in (query, doc, score) triples
        (what a mining checkpoint's search writes: ``train.positives.parquet``)."""
        keys = np.asarray(query, dtype=np.int64) * n_docs + np.asarray(doc, dtype=np.int64)
        order = np.argsort(keys, kind="stable")
        wanted = self.pair_queries() * n_docs + self.positives
        at = np.minimum(np.searchsorted(keys[order], wanted), max(len(keys) - 1, 0))
        found = (keys[order][at] == wanted) if len(keys) else np.zeros(len(wanted), dtype=bool)
        if not found.all():
            i = int(np.flatnonzero(~found)[0])
            raise InputError(source, f"has no score for the judged pair (query row {int(self.pair_queries()[i])}, "
                                     f"collection row {int(self.positives[i])})")
        return Judged(self.queries, self.offsets, self.positives, np.asarray(score, dtype=np.float32)[order][at])


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
    scores: np.ndarray | None = None           # each negative's score in the mining run
    positive_scores: np.ndarray | None = None  # each pair's positive's score

    def __len__(self) -> int:
        return len(self.queries)

    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def negative_queries(self) -> np.ndarray:
        """The query of each negative (aligned with ``negatives``)."""
        return np.repeat(self.queries, self.counts())

    def keep(self, mask: np.ndarray, limit: int | None = None) -> "Negatives":
        """The negatives where ``mask`` holds, at most the first ``limit`` of each pair (in order);
        pairs left without a negative are dropped."""
        counts = self.counts()
        pair = np.repeat(np.arange(len(self)), counts)
        if limit is not None:
            kept_before = np.cumsum(mask) - mask  # kept negatives before this one, over all pairs ...
            start = np.r_[0, np.cumsum(mask)][self.offsets[:-1]]  # ... minus those of earlier pairs
            mask = mask & (kept_before - np.repeat(start, counts) < limit)
        new_counts = np.bincount(pair[mask], minlength=len(self)).astype(np.int64)
        alive = new_counts > 0
        pick = lambda a: None if a is None else a[alive]  # noqa: E731
        return Negatives(self.queries[alive], self.positives[alive], np.r_[0, np.cumsum(new_counts[alive])],
                         self.negatives[mask], None if self.scores is None else self.scores[mask],
                         pick(self.positive_scores))

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


def run_scores(rows: np.ndarray, scores: np.ndarray, q: np.ndarray, d: np.ndarray, *, chunk: int = 65536) -> np.ndarray:
    """The run's score of document ``d[i]`` for query ``q[i]`` (every ``d[i]`` is in ``rows[q[i]]``),
    float32, ``chunk`` lookups at a time (MS MARCO: 10.6M lookups in a 200-wide run, a few seconds)."""
    out = np.empty(len(q), dtype=np.float32)
    for start in range(0, len(q), chunk):
        qs, ds = q[start:start + chunk], d[start:start + chunk]
        position = (np.asarray(rows[qs]) == ds[:, None]).argmax(axis=1)
        out[start:start + chunk] = np.asarray(scores[qs, position], dtype=np.float32)
    return out


def sample_negatives(rows: np.ndarray, qids: list[str], judged: Judged, *, n: int, seed: int,
                     depth: int | None = None, round_: int = 0, scores: np.ndarray | None = None,
                     window: tuple[int, int] | None = None, relative_margin: float | None = None,
                     draw: int | None = None) -> tuple[Negatives, dict]:
    """For each judged (query, positive) pair, ``n`` collection rows drawn uniformly without
    replacement from the run's top ``depth`` (``rows[query]``, -1 = no hit) excluding every
    judged positive of that query (fewer if fewer remain).

    Controls (module docstring): ``window`` = (a, b) draws from positions a..b-1 only;
    ``relative_margin`` drops candidates scoring above the pair's positive minus |its score| x m
    (needs ``scores``, the run's scores aligned with ``rows``, and ``judged.scores``); ``draw``
    draws that many per pair instead of ``n`` (the cross-encoder's extra candidates). With
    ``scores`` the negatives carry their scores and the pairs their positive's score.

    Returns (negatives, statistics). ``stats["positive_ranks"]`` lists, per query with a positive,
    the 1-based rank of its best-ranked positive in the top ``depth`` (0 if absent).
    """
    if relative_margin is not None and (scores is None or judged.scores is None):
        raise ValueError("a relative margin needs the run's scores and the positives' scores")
    draw = n if draw is None else draw
    a, b = window if window is not None else (0, None)
    with_scores = scores is not None and judged.scores is not None
    stats = {"pairs": 0, "pairs_without_negatives": 0, "queries_missing_from_run": 0, "positives_in_topk": 0}
    candidates = dropped = 0
    # Machine integers, not Python objects: MS MARCO's 10.6M picks are 85 MB here, ~380 MB in a list.
    out_q, out_pos, counts, picked, ranks = (array("q") for _ in range(5))
    pair_index = array("q")  # each pair's positive (its score), with scores
    for j, qi in enumerate(judged.queries.tolist()):
        first = int(judged.offsets[j])
        positives = judged.positives[first:judged.offsets[j + 1]].tolist()
        if not positives:
            continue
        full = rows[qi, :depth].tolist() if depth else rows[qi].tolist()
        top = [d for d in full if d >= 0]
        if not top:
            stats["queries_missing_from_run"] += 1
        pos_set = set(positives)
        ranks.append(next((i + 1 for i, d in enumerate(top) if d in pos_set), 0))
        if window is None:  # the pool as it always was
            pool = [d for d in top if d not in pos_set]
            stats["positives_in_topk"] += len(top) - len(pool)
            part = full
        else:  # the same order, positions a..b-1 only; the diagnostics still over the whole top
            stats["positives_in_topk"] += len(pos_set.intersection(top))  # a run lists a document once
            part = full[a:b]
            pool = [d for d in part if d >= 0 and d not in pos_set]
        if relative_margin is not None:
            part_scores = np.asarray(scores[qi, a:a + len(part)], dtype=np.float32).tolist()
            pool_scores = np.array([s for d, s in zip(part, part_scores) if d >= 0 and d not in pos_set],
                                   dtype=np.float32)
        rng = query_rng(seed, qids[qi], round_)
        for k, pos in enumerate(positives):
            stats["pairs"] += 1
            cand = pool
            candidates += len(pool)
            if relative_margin is not None and pool:
                positive = float(judged.scores[first + k])
                keep = np.flatnonzero(pool_scores <= positive - abs(positive) * relative_margin).tolist()
                dropped += len(pool) - len(keep)
                cand = [pool[i] for i in keep]
            if not cand:
                stats["pairs_without_negatives"] += 1
                continue
            picks = rng.choice(len(cand), size=min(draw, len(cand)), replace=False)
            out_q.append(qi)
            out_pos.append(pos)
            counts.append(len(picks))
            picked.extend(cand[i] for i in picks)
            if with_scores:
                pair_index.append(first + k)
    counts_array = np.frombuffer(counts, dtype=np.int64)
    queries_array = np.frombuffer(out_q, dtype=np.int64)
    picked_array = np.frombuffer(picked, dtype=np.int64)
    neg_scores = pair_scores = None
    if with_scores:  # looked up once at the end, vectorised, rather than carried through the loop
        neg_scores = run_scores(rows, scores, np.repeat(queries_array, counts_array), picked_array)
        pair_scores = judged.scores[np.frombuffer(pair_index, dtype=np.int64)]
    negatives = Negatives(queries_array, np.frombuffer(out_pos, dtype=np.int64), np.r_[0, np.cumsum(counts_array)],
                          picked_array, neg_scores, pair_scores)
    stats["examples"] = len(negatives)
    stats["mean_negatives"] = float(np.mean(counts)) if counts else 0.0
    stats["positive_ranks"] = list(ranks)
    if relative_margin is not None:
        stats["margin_dropped"] = dropped
        stats["margin_dropped_share"] = dropped / candidates if candidates else 0.0
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


@dataclass
class CrossEncoderFilter:
    """A cross-encoder as mining uses it: ``score(query_rows, collection_rows)`` gives the relevance
    probability of each (query, document) pair (see :class:`anceflow.crossencoder.CrossEncoder`);
    a candidate above ``threshold`` is flagged. ``mode`` ``denoise`` draws ``ceil(oversample * n)``
    candidates per pair and keeps the first ``n`` unflagged; ``audit`` drops nothing."""

    score: Callable[[np.ndarray, np.ndarray], np.ndarray]
    threshold: float = 0.5
    mode: str = "denoise"
    oversample: float = 2.0

    def draw(self, n: int) -> int:
        return math.ceil(self.oversample * n) if self.mode == "denoise" else n


def apply_cross_encoder(negatives: Negatives, cross_encoder: CrossEncoderFilter, n: int) -> tuple[Negatives, dict]:
    """Score every drawn candidate once per (query, document) (positives of one query share their
    query's pool), flag those above the threshold, and in ``denoise`` mode keep the first ``n``
    unflagged of each pair."""
    if cross_encoder.mode not in ("denoise", "audit"):
        raise ValueError(f"cross-encoder mode must be 'denoise' or 'audit', not {cross_encoder.mode!r}")
    q, d = negatives.negative_queries(), negatives.negatives
    width = int(d.max()) + 1 if len(d) else 1
    unique, inverse = np.unique(q * width + d, return_inverse=True)
    probability = np.asarray(cross_encoder.score(unique // width, unique % width), dtype=np.float32)
    if probability.shape != unique.shape:
        raise ValueError(f"the cross-encoder returned {probability.shape} scores for {len(unique)} pairs")
    flagged = probability[inverse] > cross_encoder.threshold
    info = {"mode": cross_encoder.mode, "threshold": cross_encoder.threshold, "candidates": len(d),
            "pairs_scored": len(unique), "flagged": int(flagged.sum()),
            "flagged_share": float(flagged.mean()) if len(d) else None}
    if cross_encoder.mode == "denoise":
        kept = negatives.keep(~flagged, limit=n)
        info.update(dropped=int(flagged.sum()), pairs_emptied=len(negatives) - len(kept),
                    pairs_short=int((kept.counts() < n).sum()))
        negatives = kept
    return negatives, info


def score_gap(negatives: Negatives, bins: int = 20) -> dict | None:
    """The distribution of (positive's score - negative's score) over the negatives kept, from the
    mining run (None without scores): quantiles, the share of negatives scoring above their
    positive, the median gap relative to |positive score|, and a histogram."""
    if negatives.scores is None or not len(negatives.negatives):
        return None
    positive = np.repeat(negatives.positive_scores, negatives.counts()).astype(np.float64)
    gap = positive - negatives.scores
    p5, p25, p50, p75, p95 = np.quantile(gap, [0.05, 0.25, 0.5, 0.75, 0.95]).tolist()
    counts, edges = np.histogram(gap, bins=bins)
    relative = gap / np.maximum(np.abs(positive), 1e-12)
    return {"negatives": len(gap), "mean": float(gap.mean()), "min": float(gap.min()), "p5": p5, "p25": p25,
            "median": p50, "p75": p75, "p95": p95, "max": float(gap.max()),
            "above_positive_share": float((gap < 0).mean()), "relative_median": float(np.median(relative)),
            "histogram": {"edges": edges.tolist(), "counts": counts.tolist()}}


def mine(rows: np.ndarray, qids: list[str], judged: Judged, *, n: int, seed: int, depth: int, round_: int,
         query_fraction: float = 1.0, query_selection: str = "random", previous: Negatives | None = None,
         n_docs: int | None = None, scores: np.ndarray | None = None, window: tuple[int, int] | None = None,
         relative_margin: float | None = None, cross_encoder: CrossEncoderFilter | None = None
         ) -> tuple[Negatives, dict]:
    """Negatives of one round plus its diagnostics (see README, "ANCE rounds"), with the
    false-negative controls of the module docstring (all off by default)."""
    chosen = select_queries(judged, query_fraction, seed, round_, query_selection)
    negatives, stats = sample_negatives(rows, qids, chosen, n=n, seed=seed, depth=depth, round_=round_, scores=scores,
                                        window=window, relative_margin=relative_margin,
                                        draw=cross_encoder.draw(n) if cross_encoder else None)
    if cross_encoder is not None:
        negatives, stats["cross_encoder"] = apply_cross_encoder(negatives, cross_encoder, n)
        stats["pairs_without_negatives"] += stats["cross_encoder"].get("pairs_emptied", 0)
        stats["examples"] = len(negatives)
        stats["mean_negatives"] = float(negatives.counts().mean()) if len(negatives) else 0.0
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
    controlled = window is not None or relative_margin is not None or cross_encoder is not None
    if controlled and stats["pairs"] and not len(negatives):
        dropped = (f"; the relative margin dropped {stats['margin_dropped_share']:.0%} of the candidates"
                   if relative_margin is not None else "")
        raise ValueError(f"round {round_}: the false-negative controls of config key 'ance.negatives' left none of "
                         f"{stats['pairs']} (query, positive) pairs a negative{dropped}; widen rank_window, lower "
                         "relative_margin or raise the cross-encoder's threshold")
    if controlled:
        stats["controls"] = {"rank_window": list(window) if window is not None else None,
                             "relative_margin": relative_margin,
                             "cross_encoder": cross_encoder.mode if cross_encoder is not None else None}
        stats["pairs_short"] = int((negatives.counts() < n).sum())
    if scores is not None:
        stats["score_gap"] = score_gap(negatives)
    return negatives, stats


def make_negatives(run: str | Path, queries: str | Path, collection: str | Path, qrels: str | Path,
                   out: str | Path, *, n: int, seed: int, depth: int, round_: int, query_fraction: float = 1.0,
                   query_selection: str = "random", previous: str | Path | None = None,
                   scores: str | Path | None = None, positives: str | Path | None = None,
                   window: tuple[int, int] | None = None, relative_margin: float | None = None,
                   cross_encoder: CrossEncoderFilter | None = None) -> dict:
    """One round's negatives file from a run: a TREC file (BM25) or int32 rows (``.npy``, dense).

    A dense run may come with its scores (``scores``: float16 ``[queries, k]``, aligned with the
    rows) and its positives' scores (``positives``: parquet of query, doc, score), which the
    relative margin needs and the score-gap statistics use.
    """
    qids, pids = read_ids(queries, "qid"), read_ids(collection, "pid")
    rows = load_rows(run) if str(run).endswith(".npy") else read_trec_rows(run, qids, pids, depth)
    if len(rows) != len(qids):
        raise InputError(run, f"has {len(rows)} query rows, {queries} has {len(qids)} queries")
    judged = Judged.read(qrels, qids, pids)
    run_scores = None
    if scores is not None and positives is not None:
        run_scores = np.load(scores, mmap_mode="r")
        if run_scores.shape != rows.shape:
            raise InputError(scores, f"has shape {run_scores.shape}, the run {run} has {rows.shape}")
        table = pq.read_table(positives, columns=["query", "doc", "score"])
        judged = judged.with_scores(*(table.column(c).to_numpy() for c in ("query", "doc", "score")),
                                    n_docs=len(pids), source=positives)
    before = Negatives.read(previous, qids, pids) if previous else None
    negatives, stats = mine(rows, qids.to_pylist(), judged, n=n, seed=seed, depth=depth, round_=round_,
                            query_fraction=query_fraction, query_selection=query_selection, previous=before,
                            n_docs=len(pids), scores=run_scores, window=tuple(window) if window else None,
                            relative_margin=relative_margin, cross_encoder=cross_encoder)
    write_negatives(negatives.to_table(qids, pids), out)
    return stats
