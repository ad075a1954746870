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


class CpuTooSlowError(RuntimeError):
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
               threads: int | None = None, progress: bool = True) -> dict:
    """Search every split of one checkpoint and write its run (TREC, or int32 rows for mining).

    ``index_path`` is the faiss index of an approximate type; ``None`` means exact search over
    ``shards``. See the module docstring for devices and limits.
    """
    if threads:
        torch.set_num_threads(threads)
    pids = pq.read_table(collection, columns=["pid"]).column("pid").combine_chunks()
    row_to_doc = pq.read_table(corpus_rows, columns=["doc"]).column("doc").to_numpy() if chunks > 1 else None
    reranks = [s for s in splits if s.candidates is not None]
    splits = [s for s in splits if s.candidates is None]
    vectors = [np.load(s.queries, mmap_mode="r") for s in splits]
    rows, dim = shard_shapes(shards)
    n_rows = sum(rows)
    ks = [min(s.depth * chunks, n_rows) for s in splits]
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
        found = [None] * len(splits)
        if gpu_faiss and any(k <= FAISS_GPU_MAX_K for k in ks):
            try:
                flat = FaissGpuFlat(shards, progress=progress)
                for i, (v, k) in enumerate(zip(vectors, ks)):
                    if k <= FAISS_GPU_MAX_K:
                        found[i] = flat.search(np.asarray(v, dtype=np.float32), k)
                del flat
            except RuntimeError as err:  # e.g. a faiss-gpu build without kernels for this GPU's architecture
                log.warning("faiss-gpu failed (%s); exact search in torch instead", err)
                gpu_faiss, found = False, [None] * len(splits)
        rest = [i for i in range(len(splits)) if found[i] is None]
        if rest:
            if gpu_faiss:
                log.info("k above faiss-gpu's %d for %s: exact search in torch", FAISS_GPU_MAX_K,
                         ", ".join(splits[i].name for i in rest))
            for i, result in zip(rest, exact_topk(shards, [vectors[i] for i in rest], [ks[i] for i in rest],
                                                  device=device, progress=progress)):
                found[i] = result
        how = ("faiss-gpu (float16) and torch" if gpu_faiss and rest else "faiss-gpu (float16)" if gpu_faiss
               else f"torch on {device.type}")
    stats = {"rows": n_rows, "dim": dim, "how": how, "splits": {}}
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
