"""Runs as arrays: a ranking of each query's documents as int32 collection rows.

Mining and negative sampling need the top-k of every training query (MS MARCO: 503k
queries x 200). As Python dicts of strings that is ~131 bytes a hit (~21 GB); as an int32
array ``[queries, k]`` of collection rows (-1 where a query has fewer hits) it is 4 bytes
(400 MB), and it is what a dense search produces anyway. Row ``i`` of the array is query
``i`` of ``queries.<split>.parquet``; the values index ``collection.parquet``.

A TREC run (what Anserini writes for BM25) is read into that form by :func:`read_trec_rows`,
streaming, in trec_eval's ranking order (score descending, ties by docid descending), so
the array ranks exactly as the evaluation does.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from anceflow.errors import InputError
from anceflow.io import atomic_path

TREC_COLUMNS = ["qid", "q0", "pid", "rank", "score", "tag"]


def read_ids(path: str | Path, column: str) -> pa.Array:
    """One id column of a prepared parquet (``pid`` of collection, ``qid`` of queries) as an Arrow array."""
    return pq.read_table(path, columns=[column]).column(column).combine_chunks()


def lookup(ids: pa.Array, values: pa.Array, *, what: str, source: str | Path, where: str) -> np.ndarray:
    """Positions of ``ids`` in ``values`` (int64); an id that is not there is an error naming it
    (``source``: the file ``ids`` come from; ``where``: what ``values`` are)."""
    found = pc.index_in(ids, value_set=values)
    if found.null_count:
        missing = ids.filter(pc.is_null(found))[0].as_py()
        raise InputError(source, f"{what} {missing!r} is not in {where}")
    return found.to_numpy(zero_copy_only=False).astype(np.int64, copy=False)


def id_rank(values: pa.Array, *, descending: bool = False) -> np.ndarray:
    """For each string, its position in sorted order, so that sorting by it sorts the strings
    (descending: trec_eval's tie-break among equal scores)."""
    order = pc.array_sort_indices(values, order="descending" if descending else "ascending").to_numpy()
    rank = np.empty(len(values), dtype=np.int64)
    rank[order] = np.arange(len(values))
    return rank


def read_trec_rows(path: str | Path, qids: pa.Array, pids: pa.Array, depth: int, *,
                   block_size: int = 64 << 20) -> np.ndarray:
    """A TREC run (``qid Q0 pid rank score tag``, single spaces) as int32 rows ``[len(qids), depth]``.

    Reads the file in blocks of whole lines, so memory is the output array plus one block. Each
    query's lines must be contiguous (as Anserini and this project write them); within a query,
    hits are re-ranked by score descending, ties by pid descending (trec_eval's order).
    """
    rows = np.full((len(qids), depth), -1, dtype=np.int32)
    seen = np.zeros(len(qids), dtype=bool)
    tie_key = id_rank(pids, descending=True)
    options = dict(
        read_options=pacsv.ReadOptions(column_names=TREC_COLUMNS, use_threads=False),
        parse_options=pacsv.ParseOptions(delimiter=" ", quote_char=False),
        convert_options=pacsv.ConvertOptions(column_types={"qid": pa.string(), "pid": pa.string(),
                                                           "score": pa.float64()},
                                             include_columns=["qid", "pid", "score"]),
    )
    carry = None  # the last query of a block may continue in the next one

    def place(q: np.ndarray, d: np.ndarray, s: np.ndarray) -> None:
        order = np.lexsort((tie_key[d], -s, q))
        q, d = q[order], d[order]
        starts = np.flatnonzero(np.r_[True, q[1:] != q[:-1]])
        if seen[q[starts]].any():
            raise InputError(path, f"the hits of qid {qids[int(q[starts][seen[q[starts]]][0])].as_py()!r} are not "
                                   "contiguous (a query's lines must follow each other)")
        seen[q[starts]] = True
        rank = np.arange(len(q)) - np.repeat(starts, np.diff(np.r_[starts, len(q)]))
        keep = rank < depth
        rows[q[keep], rank[keep]] = d[keep]

    try:
        for batch in _line_blocks(path, block_size):
            batch = pacsv.read_csv(pa.BufferReader(batch), **options)
            if batch.num_rows == 0:
                continue
            q = lookup(batch.column("qid").combine_chunks(), qids, what="qid", source=path,
                       where="the queries of the split")
            d = lookup(batch.column("pid").combine_chunks(), pids, what="pid", source=path, where="the collection")
            s = batch.column("score").to_numpy()
            if carry is not None:
                q, d, s = (np.concatenate([a, b]) for a, b in zip(carry, (q, d, s)))
            last = np.flatnonzero(q != q[-1])
            cut = last[-1] + 1 if len(last) else 0
            carry = (q[cut:], d[cut:], s[cut:])
            if cut:
                place(q[:cut], d[:cut], s[:cut])
    except pa.ArrowInvalid as exc:
        raise InputError(path, f"not a TREC run (qid Q0 pid rank score tag): {exc}") from None
    if carry is not None and len(carry[0]):
        place(*carry)
    return rows


def save_rows(path: str | Path, rows: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(rows, dtype=np.int32))


def load_rows(path: str | Path) -> np.ndarray:
    rows = np.load(path, mmap_mode="r")
    if rows.ndim != 2 or rows.dtype != np.int32:
        raise InputError(path, f"expected an int32 [queries, k] array, found {rows.dtype} {rows.shape}")
    return rows


def _line_blocks(path: str | Path, block_size: int):
    """The file as blocks of about ``block_size`` bytes that end at a line end. (pyarrow's own
    streaming CSV reader held 2-3 GB of parsed blocks on a 3.6 GB run, whatever its options;
    parsing one block at a time holds one: bench/negatives_size.py.)"""
    with open(path, "rb") as fh:
        tail = b""
        while chunk := fh.read(block_size):
            chunk = tail + chunk
            cut = chunk.rfind(b"\n") + 1
            if cut:
                yield memoryview(chunk)[:cut]
            tail = chunk[cut:]
        if tail.strip():
            yield tail


def rows_from_ranking(ranking: dict[str, list[str]], qids: list[str], pids: list[str], depth: int) -> np.ndarray:
    """{qid: [pid, ...]} in rank order -> rows (for small inputs and tests)."""
    position = {p: i for i, p in enumerate(pids)}
    rows = np.full((len(qids), depth), -1, dtype=np.int32)
    for i, qid in enumerate(qids):
        hits = [position[p] for p in ranking.get(qid, [])[:depth]]
        rows[i, : len(hits)] = hits
    return rows
