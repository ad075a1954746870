"""Search: every query split of one checkpoint against its corpus vectors, in one job.

Exact search (``index.type: flat``, the default and ANCE's) reads the fp16/fp32 corpus shards
that encoding wrote; it never makes a float32 copy of the corpus (MS MARCO passage: 27 GB):

* **torch** (:func:`exact_topk`): the corpus is streamed block by block from the memory-mapped
  shards, each block scored against every split's queries (fp32 matrix products) and merged
  into a running top-k per split. Memory is one block, the queries and the running top-k, so
  it works on a GPU of any size and on a CPU; it reads the corpus once for all splits; and
  ``k`` is unlimited (MaxP asks for 1000 documents x 4 chunks = 4000 rows).
* **faiss-gpu** (:class:`FaissGpuFlat`, when faiss was built with GPU support): float16
  storage on the GPU (2 bytes a dimension), built from fixed-size sub-indexes that each get
  one ``add`` (faiss's flat GPU storage reallocates to the exact new size on every add, which
  would peak at twice the corpus), spread over the job's GPUs, joined in an ``IndexShards``.
  faiss-gpu selects at most 2048 results; a split that asks for more is searched with torch.

Approximate types (ivf_flat, hnsw, ivf_pq) search the faiss index that ``build_index`` wrote.

``use_gpu``: ``"auto"`` uses a GPU when torch sees one (faiss-gpu where installed, else torch),
else the CPU, but refuses exact work that would take the CPU longer than ``max_cpu_hours``
(an estimate from the matrix-product size) instead of running for hours; ``True`` insists on a
GPU; ``False`` insists on the CPU whatever the estimate.

With MaxP a document has several rows (chunks); we fetch ``depth * chunks`` rows so that
``depth`` distinct documents survive when each keeps only its best chunk.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from anceflow.errors import PermanentError
from anceflow.index import open_shard, shard_shapes, aggregate_max, gpu_available, load_index, search
from anceflow.io import atomic_path
from anceflow.runs import save_rows
from anceflow.tokenize import corpus_documents

log = logging.getLogger(__name__)

#: faiss's GPU selection limit (GPU_MAX_SELECTION_K): a GPU search returns at most this many results.
FAISS_GPU_MAX_K = 2048
#: Rows per faiss-gpu sub-index: one ``add`` each, so no reallocation; float32 staging of one
#: sub-index is 1M x 768 x 4 = 3 GB of host memory.
FAISS_GPU_SUB_ROWS = 1 << 20
#: Exact-search throughput per CPU core for the time estimate, in multiply-adds x 2 per second,
#: selection included (:func:`exact_topk` on a 2-core AVX-512 EPYC: 44 GFLOP/s on both cores;
#: faiss-cpu's IndexFlatIP: 27).
CPU_FLOPS_PER_CORE = 22e9


@dataclass
class Split:
    """One query split to search: its vectors, how deep, and where the result goes.

    ``out`` ending in ``.npy`` gets int32 collection rows ``[queries, depth]`` (mining), any
    other name a TREC run (evaluation). With ``candidates`` (a prepared candidates parquet, e.g.
    MS MARCO's top1000.dev) the split is reranked: each query's candidates scored with the same
    inner product, nothing else (the paper's "rerank" column).
    """

    name: str
    queries: str | Path
    query_rows: str | Path
    depth: int
    out: str | Path
    candidates: str | Path | None = None   # set: rerank this candidate list (qid, pid, rank) instead
    scores: str | Path | None = None       # mining: also the run's scores, float16 [queries, depth] (.npy)
    positives: str | Path | None = None    # mining: also every judged positive's score (parquet) ...
    qrels: str | Path | None = None        # ... of the judgments (grade > 0) in this qrels parquet


class CpuTooSlowError(PermanentError, RuntimeError):
    """Exact search on the CPU would take longer than the configured limit."""


def cpu_estimate_hours(n_queries: int, n_rows: int, dim: int, threads: int) -> float:
    return 2.0 * n_queries * n_rows * dim / (max(threads, 1) * CPU_FLOPS_PER_CORE) / 3600


def pick_device(use_gpu) -> torch.device:
    if use_gpu is True and not torch.cuda.is_available():
        raise RuntimeError("index.use_gpu is true but torch sees no GPU (is this job on a GPU node, with a "
                           "CUDA build of torch?)")
    if use_gpu is not False and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


# --------------------------------------------------------------------------- torch exact search

def _blocks(shards: Sequence, block_rows: int):
    """(first row, array) blocks of at most ``block_rows`` over the shards, in row order."""
    offset = 0
    for shard in shards:
        arr = open_shard(shard)
        for start in range(0, arr.shape[0], block_rows):
            yield offset + start, arr[start:start + block_rows]
        offset += arr.shape[0]
        del arr


def exact_topk(shards: Sequence, queries: Sequence[np.ndarray], ks: Sequence[int], *, device: torch.device,
               block_rows: int | None = None, query_batch: int | None = None, progress: bool = True
               ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Exact inner-product top-k of several query sets over the rows of ``shards``, in one pass.

    Returns, per query set, ``(scores float32 [n, k], rows int64 [n, k])`` by decreasing score,
    ties by increasing row; rows -1 / scores -inf where the corpus has fewer than ``k`` rows.
    Scores are fp32 products of the fp32 queries with the stored (fp16 or fp32) vectors.
    Defaults: blocks of 16k corpus rows x 1k queries on a CPU (64 MB of scores), 64k x 8k on a GPU.
    """
    rows_per_shard, dim = shard_shapes(shards)
    total = sum(rows_per_shard)
    gpu = device.type == "cuda"
    query_batch = query_batch or (8192 if gpu else 1024)
    block_rows = block_rows or (65536 if gpu else 16384)
    sets = []
    for q, k in zip(queries, ks):
        q = torch.from_numpy(np.array(q, dtype=np.float32)).to(device)  # a copy: memory maps are read-only
        if q.ndim != 2 or q.shape[1] != dim:
            raise ValueError(f"queries must have shape [n, {dim}], got {tuple(q.shape)}")
        batches = [{"start": b, "best_s": torch.full((len(q[b:b + query_batch]), k), -math.inf, device=device),
                    "best_i": torch.full((len(q[b:b + query_batch]), k), -1, dtype=torch.int64, device=device),
                    "entered": k} for b in range(0, len(q), query_batch)]
        sets.append((q, k, batches))
    with tqdm(total=total, desc="exact search", unit=" rows", disable=not progress, mininterval=2) as bar:
        for first, block in _blocks(shards, block_rows):
            corpus = torch.from_numpy(np.array(block)).to(device).float()  # a copy: memory maps are read-only
            ids = torch.arange(first, first + len(corpus), device=device)
            width = len(corpus)
            for q, k, batches in sets:
                for b in batches:
                    scores = q[b["start"]:b["start"] + query_batch] @ corpus.T
                    # Only scores above a query's current k-th best can enter its top-k. Selection,
                    # not the product, costs most, and after the first blocks few scores qualify:
                    # select a few more than entered last time, and all k only if some query's last
                    # selected score still qualifies (so the result stays exact).
                    threshold = b["best_s"][:, -1]
                    want = min(k, width)
                    guess = min(want, max(16, 2 * b["entered"]))
                    top_s, top_j = scores.topk(guess, dim=1)
                    if guess < want and bool((top_s[:, -1] > threshold).any()):
                        top_s, top_j = scores.topk(want, dim=1)
                    qualifies = top_s > threshold[:, None]
                    b["entered"] = int(qualifies.sum(dim=1).max())
                    if b["entered"] == 0:
                        continue
                    keep_s, keep_j = torch.cat([b["best_s"], top_s], dim=1).topk(k, dim=1)
                    b["best_i"] = torch.cat([b["best_i"], ids[top_j]], dim=1).gather(1, keep_j)
                    b["best_s"] = keep_s
            bar.update(width)
    out = []
    for _, _, batches in sets:
        best_s = torch.cat([b["best_s"] for b in batches])
        best_i = torch.cat([b["best_i"] for b in batches])
        # Deterministic order: by row, then stably by score (topk leaves ties in any order).
        by_row = torch.where(best_i < 0, total, best_i).argsort(dim=1, stable=True)
        s, i = best_s.gather(1, by_row), best_i.gather(1, by_row)
        by_score = s.argsort(dim=1, descending=True, stable=True)
        out.append((s.gather(1, by_score).cpu().numpy(), i.gather(1, by_score).cpu().numpy()))
    return out


# --------------------------------------------------------------------------- faiss-gpu exact search

class FaissGpuFlat:
    """An exact inner-product index in GPU memory, float16 storage, over all of the job's GPUs.

    Built from sub-indexes of :data:`FAISS_GPU_SUB_ROWS` rows, each filled by a single ``add``
    (no reallocation), assigned to GPUs in contiguous runs of rows so each GPU holds about
    1/n of the corpus, and searched together through ``faiss.IndexShards`` (successive ids).
    Needs a faiss build with GPU support; not available on machines without one.
    """

    def __init__(self, shards: Sequence, *, gpus: int | None = None, sub_rows: int = FAISS_GPU_SUB_ROWS,
                 progress: bool = True):
        import faiss

        rows, dim = shard_shapes(shards)
        total = sum(rows)
        gpus = gpus or faiss.get_num_gpus()
        per_gpu = -(-total // gpus)
        self.resources = [faiss.StandardGpuResources() for _ in range(gpus)]
        self.index = faiss.IndexShards(dim, True, True)  # threaded, successive ids
        self.subs = []
        done = 0
        with tqdm(total=total, desc="faiss-gpu add", unit=" rows", disable=not progress, mininterval=2) as bar:
            for _, block in _blocks(shards, sub_rows):
                cfg = faiss.GpuIndexFlatConfig()
                cfg.useFloat16 = True
                cfg.device = min(done // per_gpu, gpus - 1)
                sub = faiss.GpuIndexFlatIP(self.resources[cfg.device], dim, cfg)
                sub.add(np.ascontiguousarray(block, dtype=np.float32))
                self.index.add_shard(sub)
                self.subs.append(sub)  # the IndexShards does not own its shards
                done += len(block)
                bar.update(len(block))
        self.index.syncWithSubIndexes()
        self.ntotal = int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k > FAISS_GPU_MAX_K:
            raise ValueError(f"faiss-gpu selects at most {FAISS_GPU_MAX_K} results, asked for {k}")
        return search(self.index, queries, k)


# --------------------------------------------------------------------------- the id self-check

#: Documents a probe's search returns (rows: that times the chunks).
SELF_CHECK_DEPTH = 10
#: How far a probe's score under its own pid may be from its vector's product with itself,
#: relative: fp32 products summed in another order (~1e-6), faiss-gpu's float16 storage of float32
#: vectors (at most 2^-10). Two vectors this close are duplicates for every ranking purpose.
SELF_CHECK_RTOL = 1e-3
#: Exact search: fewer hits than this share, overall or in any one encoding shard, fail the job.
SELF_CHECK_MIN = 0.99
SELF_CHECK_MIN_SHARD = 0.9
#: Approximate types (ivf_flat, hnsw, ivf_pq) do not promise that a vector finds itself: below
#: SELF_CHECK_MIN they warn, and fail only below this, overall or in a shard (a wrong id mapping
#: gives about 0; a working approximate index well above it).
SELF_CHECK_MIN_APPROX = 0.5
SELF_CHECK_MODES = ("fail", "warn", "off")


class SelfCheckError(RuntimeError):
    """Corpus rows searched with their own stored vectors did not come back under their own pid."""


@dataclass
class Probes:
    """The corpus rows the self-check queries, from the encoding jobs' probe files
    (:func:`anceflow.encode.write_probe`): global rows, the pid each row was tokenized from,
    their vectors as stored (float32 here), and the encoding shard each came from."""

    rows: np.ndarray
    pids: np.ndarray
    vectors: np.ndarray
    shard: np.ndarray

    @classmethod
    def load(cls, paths: Sequence[str | Path]) -> "Probes":
        parts = []
        for path in paths:
            with np.load(path) as z:
                n = len(z["rows"])
                parts.append((z["rows"].astype(np.int64), z["pids"].astype(str), z["vectors"].astype(np.float32),
                              np.full(n, int(z["shard"]), dtype=np.int64)))
        if not parts:
            raise ValueError("no probe files given")
        return cls(*(np.concatenate([p[i] for p in parts]) for i in range(4)))


def check_self_retrieval(probes: Probes, scores: np.ndarray, docs: np.ndarray, pids: pa.Array, *,
                         shards: Sequence, row_to_doc: np.ndarray | None, exact: bool, system: str = "",
                         how: str = "") -> dict:
    """Did each probe (a corpus row searched with its own stored vector) come back under its own pid?

    ``scores``/``docs`` are the probes' ranked documents as the search produced them (collection
    rows, mapped from corpus rows the same way as every run), ``pids`` the collection's pids.
    A probe (row ``r``, pid ``p``, vector ``v``) is a *hit* when both hold:

    * **its row**: read through the search's mapping, row ``r`` is pid ``p`` and the shards, in
      the order searched, hold exactly ``v`` there (the probe is a copy of what encoding stored).
      Exact, so that even vectors that differ only in their last bits (a collapsed model) show a
      shard out of order or a pid table that does not belong to the vectors;
    * **its search**: ``p`` is in the probe's list at the score ``s = v . v`` (within
      :data:`SELF_CHECK_RTOL`), so at rank 1 for cosine, tied with exact duplicates, or, with
      ``dot``, below only documents that outscore ``s`` (a longer vector can); or the list
      cannot show it: every listed score is at least ``s`` (more duplicates than the list holds,
      or more documents that outscore it), or with MaxP a sibling chunk scores more. A list that
      goes below ``s`` without ``p`` means the search put another id on the vector.
      Approximate index types (``exact=False``) count ``p`` anywhere in the list.

    Returns the counts, per shard, examples of misses, ``status`` (``ok``, ``warn``, ``fail``) and
    a ``message``.
    """
    n, depth = docs.shape
    own = np.einsum("ij,ij->i", probes.vectors, probes.vectors)
    tol = SELF_CHECK_RTOL * np.abs(own) + 1e-6
    # Its row.
    vectors = ShardRows(shards)
    inside = (probes.rows >= 0) & (probes.rows < vectors.starts[-1])
    rows = np.where(inside, probes.rows, 0)
    doc = rows if row_to_doc is None else np.asarray(row_to_doc)[rows]
    inside &= (doc >= 0) & (doc < len(pids))
    doc = np.where(inside, doc, 0)
    named = np.asarray(pids.take(pa.array(doc)).to_pylist(), dtype=object) == probes.pids.astype(object)
    stored_ok = inside & named & (vectors[rows] == probes.vectors).all(axis=1)
    # Its search.
    valid = docs >= 0
    names = np.asarray(pids.take(pa.array(np.where(valid, docs, 0).ravel())).to_pylist(), dtype=object)
    names = names.reshape(n, depth)
    names[~valid] = None
    mine = names == probes.pids[:, None].astype(object)
    found = (mine & (np.abs(scores - own[:, None]) <= tol[:, None])).any(axis=1) if exact else mine.any(axis=1)
    sibling = (mine & (scores > (own + tol)[:, None])).any(axis=1) & (row_to_doc is not None)
    full_above = valid.all(axis=1) & (scores[:, -1] >= own - tol) & ~mine.any(axis=1)
    search_ok = found | sibling | full_above
    hit = stored_ok & search_ok
    first = mine[:, 0] & hit
    result = {"system": system, "how": how, "exact": exact, "probes": int(n), "hits": int(hit.sum()),
              "rate": float(hit.mean()) if n else 1.0, "at_rank_1": int(first.sum()),
              "below_rank_1": int((hit & found & ~first).sum()), "beyond_list": int((hit & ~found & ~first).sum()),
              "row_mismatches": int((~stored_ok).sum()), "search_mismatches": int((~search_ok).sum()),
              "not_finite": int((~np.isfinite(probes.vectors).all(axis=1)).sum()), "shards": {}}
    for shard in np.unique(probes.shard):
        part = probes.shard == shard
        result["shards"][str(int(shard))] = {"probes": int(part.sum()), "hits": int(hit[part].sum())}
    miss = np.flatnonzero(~hit)
    result["examples"] = [{"row": int(probes.rows[i]), "expected_pid": str(probes.pids[i]),
                           "got_pid": names[i, 0], "shard": int(probes.shard[i])} for i in miss[:5]]
    shard_rates = {k: v["hits"] / v["probes"] for k, v in result["shards"].items() if v["probes"]}
    worst = min(shard_rates.items(), key=lambda kv: kv[1], default=("-", 1.0))
    floor, shard_floor = (SELF_CHECK_MIN, SELF_CHECK_MIN_SHARD) if exact else (SELF_CHECK_MIN_APPROX,) * 2
    result["status"] = ("fail" if result["rate"] < floor or worst[1] < shard_floor
                        else "warn" if result["rate"] < SELF_CHECK_MIN else "ok")
    result["message"] = self_check_message(result, worst, floor, shard_floor)
    return result


def self_check_message(r: dict, worst: tuple[str, float], floor: float, shard_floor: float) -> str:
    label = f"checkpoint {r['system']}" if r["system"] else "the checkpoint"
    head = (f"id self-check of {label} ({r['how'] or 'search'}): {r['hits']:,} of {r['probes']:,} corpus rows searched "
            f"with their own stored vectors came back under their own pid, with that vector stored at their row "
            f"({r['rate']:.1%}: {r['at_rank_1']:,} at rank 1, {r['below_rank_1']:,} tied with duplicates or below "
            f"documents that outscore their own vector, {r['beyond_list']:,} past the list's {SELF_CHECK_DEPTH} "
            f"documents)")
    if r["status"] == "ok":
        return head
    need = (f"at least {floor:.0%} needed, and {shard_floor:.0%} in every encoding shard" if r["exact"] else
            f"an approximate index ({SELF_CHECK_MIN:.0%} expected, below {floor:.0%} overall or in a shard fails)")
    shards = "; ".join(f"shard {k}: {v['hits']} of {v['probes']}" for k, v in r["shards"].items())
    examples = ", ".join(f"({e['row']}, {e['expected_pid']!r}, {e['got_pid']!r})" for e in r["examples"])
    text = (f"{head}; {need}. Per shard: {shards}. {r['row_mismatches']:,} rows hold another vector or pid than "
            f"encoding stored for them; {r['search_mismatches']:,} came back from the search under another pid. "
            f"Examples (row, expected pid, got pid at rank 1): {examples}.")
    if r["not_finite"]:
        text += f" {r['not_finite']} of the probe vectors are not finite (NaN or inf): the model has diverged."
    if r["status"] == "warn":
        return text + (" With an approximate index some rows are expected to miss (raise index.nprobe or "
                       "index.ef_search); a wrong id mapping would miss nearly all.")
    return text + (
        f" The corpus vectors and the pid table disagree{f' (worst: shard {worst[0]}, {worst[1]:.0%})'}: a shard whose "
        "rows are out of order or come from another run or checkpoint, shards searched in the wrong order, or a "
        "prepared collection.parquet and tokens (corpus.rows.parquet) that do not belong together. Every run of this "
        "checkpoint would rank the wrong documents (metrics near zero), so none was written. Re-encode "
        "(snakemake --forcerun encode_corpus); index.self_check: warn lets the runs through.")


# --------------------------------------------------------------------------- the search stage

def write_trec(path: str | Path, qids: list[str], pids, scores: np.ndarray, docs: np.ndarray, tag: str,
               batch: int = 2000) -> None:
    """A TREC run from ranked arrays (documents -1 are left out); ``pids`` is the collection's pid
    column (an Arrow array), turned into strings only for ``batch`` queries at a time."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for start in range(0, len(qids), batch):
            block = docs[start:start + batch]
            names = pids.take(pa.array(np.where(block < 0, 0, block).ravel())).to_pylist()
            width = block.shape[1]
            for i, (qid, doc_row, score) in enumerate(zip(qids[start:start + batch], block, scores[start:start + batch])):
                keep = np.flatnonzero(doc_row >= 0)
                fh.writelines(f"{qid} Q0 {names[i * width + j]} {r} {score[j]:.6f} {tag}\n"
                              for r, j in enumerate(keep.tolist(), 1))


def to_documents(scores: np.ndarray, rows: np.ndarray, row_to_doc: np.ndarray | None, depth: int,
                 batch: int = 16384) -> tuple[np.ndarray, np.ndarray]:
    """Ranked rows -> ranked documents: FirstP keeps the first ``depth`` (rows are documents);
    MaxP keeps each document's best chunk (:func:`aggregate_max`), a batch of queries at a time."""
    if row_to_doc is None:
        return scores[:, :depth], rows[:, :depth]
    parts = [aggregate_max(scores[i:i + batch], rows[i:i + batch], row_to_doc, depth)
             for i in range(0, len(rows), batch)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


class ShardRows:
    """Random access to rows of the concatenated shards (memory-mapped), a sorted gather per shard."""

    def __init__(self, shards: Sequence):
        self.arrays = [open_shard(s) for s in shards]
        self.starts = np.cumsum([0] + [len(a) for a in self.arrays])

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), self.arrays[0].shape[1]), dtype=np.float32)
        order = np.argsort(rows, kind="stable")
        shard = np.searchsorted(self.starts, rows[order], side="right") - 1
        for i, array in enumerate(self.arrays):
            pick = order[shard == i]
            out[pick] = array[rows[pick] - self.starts[i]]
        return out


def pair_scores(shards: Sequence, queries: np.ndarray, q: np.ndarray, d: np.ndarray, doc_rows: np.ndarray, *,
                batch_pairs: int = 1 << 17) -> np.ndarray:
    """Inner products of (query ``q[i]``, document ``d[i]``) pairs, float32; MaxP: a document's best
    chunk (``doc_rows``: each document's token rows, -1 = none). Vectors are gathered from the
    shards ``batch_pairs`` pairs at a time."""
    vectors, chunks = ShardRows(shards), doc_rows[d]                     # [pairs, C] token rows, -1 = none
    scores = np.full(chunks.shape, -np.inf, dtype=np.float32)
    flat = np.flatnonzero(chunks.ravel() >= 0)
    for start in range(0, len(flat), batch_pairs):
        cell = flat[start:start + batch_pairs]
        pair, rows = cell // chunks.shape[1], chunks.ravel()[cell]
        scores.ravel()[cell] = np.einsum("ij,ij->i", np.asarray(queries[q[pair]], dtype=np.float32), vectors[rows])
    return scores.max(axis=1) if len(scores) else np.zeros(0, dtype=np.float32)


def positive_scores(shards: Sequence, queries: np.ndarray, query_rows: str | Path, qrels: str | Path,
                    collection_pids, doc_rows: np.ndarray, out: str | Path) -> int:
    """Every judged (query, positive) pair's score, wherever the positive ranks: a parquet of
    ``query`` (row of the split), ``doc`` (collection row), ``score`` (float32), for mining's
    relative margin and its score-gap audit. Returns the number of pairs."""
    from anceflow.negatives import Judged

    qids = pq.read_table(query_rows, columns=["qid"]).column("qid").combine_chunks()
    judged = Judged.read(qrels, qids, collection_pids)
    q = np.repeat(judged.queries, np.diff(judged.offsets))
    scores = pair_scores(shards, queries, q, judged.positives, doc_rows)
    table = pa.table({"query": pa.array(q, pa.int32()), "doc": pa.array(judged.positives, pa.int32()),
                      "score": pa.array(scores, pa.float32())})
    with atomic_path(out) as tmp:
        pq.write_table(table, tmp)
    return len(q)


def rerank_candidates(shards: Sequence, queries: np.ndarray, query_rows: str | Path, candidates: str | Path,
                      collection_pids, doc_rows: np.ndarray, *, batch_pairs: int = 1 << 17
                      ) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Score each query's candidate documents by inner product (MaxP: a document's best chunk).

    Returns per query with candidates ``(qid, scores, docs)`` by decreasing score (ties: the
    candidate list's order). Vectors are gathered from the shards ``batch_pairs`` pairs at a time.
    """
    from anceflow.runs import lookup

    table = pq.read_table(candidates, columns=["qid", "pid", "rank"]).sort_by([("qid", "ascending"),
                                                                               ("rank", "ascending")])
    qids = pq.read_table(query_rows, columns=["qid"]).column("qid").combine_chunks()
    q = lookup(table.column("qid").combine_chunks(), qids, what="qid", source=candidates, where="the split's queries")
    d = lookup(table.column("pid").combine_chunks(), collection_pids, what="pid", source=candidates,
               where="the collection")
    best = pair_scores(shards, queries, q, d, doc_rows, batch_pairs=batch_pairs)
    out = []
    bounds = np.flatnonzero(np.r_[True, q[1:] != q[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        order = np.argsort(-best[a:b], kind="stable")
        out.append((qids[int(q[a])].as_py(), best[a:b][order], d[a:b][order]))
    return out


def dense_runs(splits: Sequence[Split], *, shards: Sequence[str | Path], corpus_rows: str | Path,
               collection: str | Path, tag: str, chunks: int = 1, index_path: str | Path | None = None,
               nprobe: int | None = None, ef_search: int | None = None, use_gpu="auto", max_cpu_hours: float = 2.0,
               threads: int | None = None, probes: Sequence[str | Path] = (), self_check: str = "fail",
               self_check_out: str | Path | None = None, progress: bool = True) -> dict:
    """Search every split of one checkpoint and write its run (TREC, or int32 rows for mining).

    ``index_path`` is the faiss index of an approximate type; ``None`` means exact search over
    ``shards``. See the module docstring for devices and limits.

    ``probes`` (the encoding jobs' probe files) are searched with the splits, in the same pass and
    through the same row -> pid mapping, and checked before any run is written
    (:func:`check_self_retrieval`); ``self_check``: ``fail`` raises :class:`SelfCheckError` when
    the check fails, ``warn`` logs it and writes the runs, ``off`` skips it. The result goes to
    ``self_check_out`` (JSON) and into the returned statistics.
    """
    self_check = "off" if self_check is False else self_check  # YAML reads a bare `off` as false
    if self_check not in SELF_CHECK_MODES:
        raise ValueError(f"self_check must be one of {SELF_CHECK_MODES}, not {self_check!r}")
    if threads:
        torch.set_num_threads(threads)
    pids = pq.read_table(collection, columns=["pid"]).column("pid").combine_chunks()
    row_to_doc = pq.read_table(corpus_rows, columns=["doc"]).column("doc").to_numpy() if chunks > 1 else None
    reranks = [s for s in splits if s.candidates is not None]
    splits = [s for s in splits if s.candidates is None]
    vectors = [np.load(s.queries, mmap_mode="r") for s in splits]
    names = [s.name for s in splits]
    rows, dim = shard_shapes(shards)
    n_rows = sum(rows)
    ks = [min(s.depth * chunks, n_rows) for s in splits]
    probe = Probes.load(probes) if probes and self_check != "off" else None
    if probe is not None:  # one more query set, searched exactly as the splits are
        vectors.append(probe.vectors)
        names.append("self-check")
        ks.append(min(SELF_CHECK_DEPTH * chunks, n_rows))
    found: list[tuple[np.ndarray, np.ndarray]]
    if index_path is not None:
        index = load_index(index_path, use_gpu=use_gpu, nprobe=nprobe, ef_search=ef_search)
        found = [search(index, np.asarray(v, dtype=np.float32), k) for v, k in zip(vectors, ks)]
        how = f"faiss {type(index).__name__}"
    else:
        device = pick_device(use_gpu)
        if device.type == "cpu":
            hours = cpu_estimate_hours(sum(len(v) for v in vectors), n_rows, dim, torch.get_num_threads())
            message = (f"exact search of {sum(len(v) for v in vectors):,} queries over {n_rows:,} x {dim} vectors "
                       f"on {torch.get_num_threads()} CPU threads: about {hours:.1f} h")
            if use_gpu == "auto" and hours > max_cpu_hours:
                raise CpuTooSlowError(
                    f"{message}, over index.max_cpu_hours ({max_cpu_hours}). Run this job on a GPU node (the slurm "
                    "profile gives dense_search a GPU), choose an approximate index.type (ivf_flat, hnsw), or set "
                    "index.use_gpu: false to run it on the CPU anyway.")
            log.info("%s", message)
        gpu_faiss = device.type == "cuda" and gpu_available()
        found = [None] * len(vectors)
        if gpu_faiss and any(k <= FAISS_GPU_MAX_K for k in ks):
            try:
                flat = FaissGpuFlat(shards, progress=progress)
                for i, (v, k) in enumerate(zip(vectors, ks)):
                    if k <= FAISS_GPU_MAX_K:
                        found[i] = flat.search(np.asarray(v, dtype=np.float32), k)
                del flat
            except RuntimeError as err:  # e.g. a faiss-gpu build without kernels for this GPU's architecture
                log.warning("faiss-gpu failed (%s); exact search in torch instead", err)
                gpu_faiss, found = False, [None] * len(vectors)
        rest = [i for i in range(len(vectors)) if found[i] is None]
        if rest:
            if gpu_faiss:
                log.info("k above faiss-gpu's %d for %s: exact search in torch", FAISS_GPU_MAX_K,
                         ", ".join(names[i] for i in rest))
            for i, result in zip(rest, exact_topk(shards, [vectors[i] for i in rest], [ks[i] for i in rest],
                                                  device=device, progress=progress)):
                found[i] = result
        how = ("faiss-gpu (float16) and torch" if gpu_faiss and rest else "faiss-gpu (float16)" if gpu_faiss
               else f"torch on {device.type}")
    stats = {"rows": n_rows, "dim": dim, "how": how, "splits": {}}
    if probe is not None:
        scores, docs = to_documents(*found.pop(), row_to_doc, min(SELF_CHECK_DEPTH, len(pids)))
        check = check_self_retrieval(probe, scores, docs, pids, shards=shards, row_to_doc=row_to_doc,
                                     exact=index_path is None, system=tag, how=how)
    else:
        check = {"system": tag, "how": how, "status": "off",
                 "message": "id self-check off" + (" (index.self_check: off)" if probes else ": no probe files")}
    stats["self_check"] = {k: v for k, v in check.items() if k not in ("message", "examples")}
    if self_check_out is not None:
        with atomic_path(self_check_out) as tmp:
            Path(tmp).write_text(json.dumps(check, indent=1) + "\n")
    if check["status"] == "fail" and self_check == "fail":
        log.error("%s", check["message"])
        raise SelfCheckError(check["message"])
    (log.warning if check["status"] in ("fail", "warn") else log.info)("%s", check["message"])
    for split, (scores, hits), k in zip(splits, found, ks):
        scores, docs = to_documents(scores, hits, row_to_doc, min(split.depth, len(pids)))
        qids = pq.read_table(split.query_rows, columns=["qid"]).column("qid").to_pylist()
        if str(split.out).endswith(".npy"):
            save_rows(split.out, docs)
        else:
            write_trec(split.out, qids, pids, scores, docs, tag)
        stats["splits"][split.name] = {"queries": len(qids), "depth": split.depth, "searched_rows": k}
        if split.scores is not None:
            # float16: 808k x 200 scores are 320 MB instead of 640; the margin and the audit need no more.
            with atomic_path(split.scores) as tmp, open(tmp, "wb") as fh:
                np.save(fh, np.asarray(scores, dtype=np.float16))
        if split.positives is not None:
            doc_rows = corpus_documents(str(corpus_rows).removesuffix(".rows.parquet"))[1]
            vectors_of_split = np.load(split.queries, mmap_mode="r")
            stats["splits"][split.name]["positives_scored"] = positive_scores(
                shards, vectors_of_split, split.query_rows, split.qrels, pids, doc_rows, split.positives)
    if reranks:
        doc_rows = corpus_documents(str(corpus_rows).removesuffix(".rows.parquet"))[1]
        for split in reranks:
            ranked = rerank_candidates(shards, np.load(split.queries, mmap_mode="r"), split.query_rows,
                                       split.candidates, pids, doc_rows)
            width = max((len(d) for _, _, d in ranked), default=0)
            scores = np.full((len(ranked), width), -np.inf, dtype=np.float32)
            docs = np.full((len(ranked), width), -1, dtype=np.int64)
            for i, (_, s, d) in enumerate(ranked):
                scores[i, :len(s)], docs[i, :len(d)] = s, d
            write_trec(split.out, [qid for qid, _, _ in ranked], pids, scores, docs, tag)
            stats["splits"][f"{split.name} (rerank)"] = {"queries": len(ranked), "candidates": int((docs >= 0).sum())}
    log.info("searched with %s: %s", how, stats)
    return stats
