"""Audit of one round's negatives: how many look like false negatives (rule audit_negatives).

Two measures that need no model, for every round (round 0's BM25 negatives too):

* **near-duplicates of a positive**: a negative whose token set overlaps one of its query's
  judged positives with a Jaccard index of at least ``threshold``. Token sets come from the
  tokenized corpus (the model's tokenizer, special tokens left out; a MaxP document's first
  chunk), so nothing is tokenized again and the comparison runs on integer arrays;
* **judged positives of another query**: a negative that some other training query has as a
  judged positive (grade > 0).

The mining statistics (``negatives/round-<n>.json``) hold what needs the mining run's scores:
the score gap between positive and negatives, what the margin dropped and the cross-encoder
flagged, and the overlap with the previous round.

Memory and time: the comparisons (a negative against each positive of its query: MS MARCO,
10.6M negatives x ~1.06 positives) are processed a chunk at a time, each chunk as sorted int64
keys of (comparison, token), about 8M tokens a side (~0.5 GB of working arrays), whatever the
collection's size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anceflow.negatives import Judged, Negatives
from anceflow.runs import read_ids
from anceflow.tokenize import TokenTable, corpus_documents

#: Token ids are below 2**31 (int32 storage), so (comparison, token) packs into one int64 key.
TOKEN_BITS = 31
#: Tokens gathered per side and chunk of comparisons.
TOKENS_PER_CHUNK = 8_000_000


def _token_keys(table: TokenTable, rows: np.ndarray, special: np.ndarray) -> np.ndarray:
    """Sorted unique int64 keys ``i << TOKEN_BITS | token`` of each token row ``rows[i]``'s tokens,
    special tokens left out."""
    lengths = table.lengths[rows].astype(np.int64)
    starts = table.offsets[rows]
    index = np.repeat(starts - np.r_[0, np.cumsum(lengths)[:-1]], lengths) + np.arange(int(lengths.sum()))
    tokens = np.asarray(table.tokens[index], dtype=np.int64)
    owner = np.repeat(np.arange(len(rows), dtype=np.int64), lengths)
    keep = ~np.isin(tokens, special)
    keys = (owner[keep] << TOKEN_BITS) | tokens[keep]
    # Keys arrive grouped by comparison (ascending high bits), so timsort ("stable") runs ~4x faster than
    # numpy's default quicksort here, and numpy 2's hash-based np.unique was slower still.
    keys.sort(kind="stable")
    return keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys


def jaccard(table: TokenTable, a: np.ndarray, b: np.ndarray, special=(), *, chunk: int | None = None) -> np.ndarray:
    """Jaccard index of the token sets of token rows ``a[i]`` and ``b[i]`` (0 when both are empty),
    ``chunk`` comparisons at a time (default: about 8M tokens a side, ~0.5 GB of working arrays)."""
    special = np.asarray(list(special), dtype=np.int64)
    out = np.zeros(len(a), dtype=np.float32)
    if chunk is None:
        mean = float(np.mean(table.lengths)) if len(table) else 1.0
        chunk = max(1024, int(TOKENS_PER_CHUNK / max(mean, 1.0)))
    for start in range(0, len(a), chunk):
        ka = _token_keys(table, a[start:start + chunk], special)
        kb = _token_keys(table, b[start:start + chunk], special)
        m = min(chunk, len(a) - start)
        size_a = np.bincount(ka >> TOKEN_BITS, minlength=m)
        size_b = np.bincount(kb >> TOKEN_BITS, minlength=m)
        # Two sorted runs: timsort merges them in linear time (np.intersect1d's quicksort was ~20x slower).
        merged = np.concatenate([ka, kb])
        merged.sort(kind="stable")
        both = merged[1:][merged[1:] == merged[:-1]]
        inter = np.bincount(both >> TOKEN_BITS, minlength=m)
        union = size_a + size_b - inter
        out[start:start + m] = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return out


def audit(negatives: Negatives, judged: Judged, tokens: TokenTable, doc_rows: np.ndarray, *, threshold: float,
          special=()) -> dict:
    """The audit figures of one round's negatives against the training judgments ``judged``
    (all of them, not only the round's share); ``doc_rows[d, 0]`` is document d's first token row."""
    total = len(negatives.negatives)
    # Judged positives of another query (never of its own: mining excludes those).
    other = np.isin(negatives.negatives, judged.positives)
    # Each negative against each positive of its query (judged queries are in qid order, not row order).
    of_negative = negatives.negative_queries()
    order = np.argsort(judged.queries, kind="stable")
    where = order[np.minimum(np.searchsorted(judged.queries[order], of_negative), max(len(order) - 1, 0))] \
        if len(order) else np.zeros(0, dtype=np.int64)
    if total and not np.array_equal(judged.queries[where], of_negative):
        raise ValueError("a negative's query has no judgments in the training qrels")
    counts = np.diff(judged.offsets)[where] if total else np.zeros(0, dtype=np.int64)
    neg_index = np.repeat(np.arange(total), counts)
    first = np.repeat(judged.offsets[where] - np.r_[0, np.cumsum(counts)[:-1]], counts) + np.arange(int(counts.sum()))
    positive = judged.positives[first]
    similarity = jaccard(tokens, doc_rows[negatives.negatives[neg_index], 0], doc_rows[positive, 0], special)
    best = np.zeros(total, dtype=np.float32)
    np.maximum.at(best, neg_index, similarity)
    duplicate = best >= threshold
    p50, p90, p99 = np.quantile(best, [0.5, 0.9, 0.99]).tolist() if total else (None, None, None)
    return {
        "negatives": total,
        "pairs": len(negatives),
        "near_duplicate_jaccard": threshold,
        "near_duplicates": int(duplicate.sum()),
        "near_duplicate_share": float(duplicate.mean()) if total else None,
        "identical_token_sets": int((best >= 1.0).sum()),
        "jaccard_median": p50, "jaccard_p90": p90, "jaccard_p99": p99,
        "positives_of_other_queries": int(other.sum()),
        "positive_of_other_query_share": float(other.mean()) if total else None,
    }


def audit_negatives(negatives: str | Path, queries: str | Path, collection: str | Path, qrels: str | Path,
                    corpus_prefix: str | Path, *, threshold: float, special=()) -> dict:
    """:func:`audit` of a negatives parquet, with the prepared split and the tokenized corpus."""
    qids, pids = read_ids(queries, "qid"), read_ids(collection, "pid")
    table = TokenTable.open(corpus_prefix)
    _, doc_rows = corpus_documents(corpus_prefix)
    if len(doc_rows) != len(pids):
        raise ValueError(f"{corpus_prefix} has {len(doc_rows)} documents, {collection} has {len(pids)}")
    return audit(Negatives.read(negatives, qids, pids), Judged.read(qrels, qids, pids), table, doc_rows,
                 threshold=threshold, special=special)
