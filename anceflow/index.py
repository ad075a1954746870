"""Dense-retrieval nearest-neighbour indexes (faiss, inner product) over sharded embeddings.

A checkpoint encodes the corpus into ``encode.shards`` contiguous row blocks, each a
2-D ``.npy`` file (float16 or float32, ``[rows_in_shard, dim]``); row ``r`` of their
concatenation is token row ``r``.  With FirstP a token row is a document row.  With
MaxP a document has several rows (chunks) and ``row_to_doc`` maps each row to its
document row; a document's score is the maximum over its chunks (:func:`aggregate_max`).

Similarity is the inner product everywhere (vectors are already L2-normalized when the
model uses cosine).  Index types (:data:`INDEX_TYPES`):

``flat``
    exact search (``IndexFlatIP``).
``ivf_flat``
    inverted lists over a k-means coarse quantizer, full vectors; ``nprobe`` lists are
    scanned at search time.
``hnsw``
    HNSW graph over full vectors (``IndexHNSWFlat``); ``efSearch`` at search time.
    Always built and searched on the CPU (faiss has no GPU HNSW).
``ivf_pq``
    inverted lists with product-quantized residuals (``pq_m`` codes of ``pq_bits`` bits).

Memory: building holds the index plus one shard converted to float32 (shards are read
with ``mmap_mode="r"`` and added one at a time, never concatenated); IVF types also hold
a training sample of ``train_size`` float32 rows while training.

GPU: ``use_gpu="auto"`` builds flat/IVF indexes on the first GPU when faiss was built
with GPU support and sees a device, else on the CPU; ``True`` insists on a GPU (an error
without one); ``False`` forces the CPU.  Saved indexes are always CPU indexes.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Sequence, Union

import numpy as np
from tqdm.auto import tqdm

from anceflow.errors import InputError
from anceflow.io import atomic_path

try:
    import faiss
except ImportError:  # exact search (anceflow.search) needs only torch; index types and export need faiss
    faiss = None

log = logging.getLogger(__name__)

INDEX_TYPES = ("flat", "ivf_flat", "hnsw", "ivf_pq")

#: Rows converted to float32 and handed to faiss per ``add`` call: bounds the float32
#: copy of a float16 shard (and GPU transfer size) independently of the shard size.
ADD_BATCH_ROWS = 1 << 17

#: faiss warns below 39 training points per centroid; the IVF defaults respect it.
_MIN_POINTS_PER_CENTROID = 39

Shard = Union[str, os.PathLike, np.ndarray]


class GpuUnavailableError(RuntimeError):
    """``use_gpu=True`` was requested but faiss has no usable GPU."""


# --------------------------------------------------------------------------- GPU helpers

def _require_faiss() -> None:
    if faiss is None:
        raise ImportError("approximate index types (index.type) and the Pyserini export need faiss: "
                          "pip install 'anceflow[cpu]' (faiss-cpu) or 'anceflow[gpu]' (faiss-gpu), one of the "
                          "two (they ship the same module); exact search (index.type: flat) needs only torch")


def gpu_available() -> bool:
    """True when this faiss build has GPU support and sees at least one GPU."""
    if faiss is None or not hasattr(faiss, "StandardGpuResources"):
        return False  # faiss-cpu build
    try:
        return faiss.get_num_gpus() > 0
    except Exception:  # a GPU build on a machine without a working driver
        return False


def _resolve_gpu(use_gpu) -> bool:
    """Map ``use_gpu`` ("auto" / True / False) to "build on a GPU?"."""
    if use_gpu == "auto":
        return gpu_available()
    if use_gpu is True or use_gpu is False:
        if use_gpu and not gpu_available():
            reason = ("faiss is not installed" if faiss is None else
                      "this faiss build has no GPU support (faiss-cpu); install faiss-gpu"
                      if not hasattr(faiss, "StandardGpuResources") else "faiss sees no GPU")
            raise GpuUnavailableError(f"use_gpu=True but {reason}; use use_gpu='auto' or False to run on the CPU")
        return use_gpu
    raise ValueError(f"use_gpu must be 'auto', True or False, not {use_gpu!r}")


def _is_gpu_index(index) -> bool:
    """True for a faiss GPU index (never on a faiss-cpu build)."""
    gpu_cls = getattr(faiss, "GpuIndex", None)
    if gpu_cls is not None and isinstance(index, gpu_cls):
        return True
    # An index the SWIG layer did not downcast still carries its class name.
    return type(index).__name__.startswith("GpuIndex")


def _to_gpu(index, index_type: str):
    """Clone a CPU index onto GPU 0 (untested here: this machine has no GPU).

    The returned index keeps a reference to its ``StandardGpuResources`` so the
    resources live as long as the index.
    """
    res = faiss.StandardGpuResources()
    co = faiss.GpuClonerOptions()
    if index_type == "ivf_pq":
        # float16 lookup tables: float32 ones fit in shared memory only up to 48
        # sub-quantizers, and the default pq_m for 768-d vectors is 64.
        co.useFloat16 = True
    gpu_index = faiss.index_cpu_to_gpu(res, 0, index, co)
    gpu_index.referenced_objects = getattr(gpu_index, "referenced_objects", []) + [res]
    return gpu_index


# --------------------------------------------------------------------------- defaults

def default_nlist(n: int) -> int:
    """IVF list count: about ``4 * sqrt(n)`` (faiss's guideline), clipped to
    ``[1, n // 39]`` so that k-means has its 39 training points per centroid."""
    return int(max(1, min(round(4 * math.sqrt(n)), n // _MIN_POINTS_PER_CENTROID)))


def default_pq_m(dim: int) -> int:
    """PQ sub-quantizer count: the largest divisor of ``dim`` that is at most
    ``min(dim // 4, 64)``.

    So each sub-vector has at least 4 dimensions (fewer compresses almost nothing) and
    codes stay at most 64 bytes at 8 bits; 768 -> 64 (12 dims each, also a GPU-supported
    count), 384 -> 64, 32 -> 8.  A prime ``dim`` falls back to 1.
    """
    if dim < 1:
        raise ValueError(f"dim must be positive, got {dim}")
    cap = max(1, min(dim // 4, 64))
    return max(m for m in range(1, cap + 1) if dim % m == 0)


# --------------------------------------------------------------------------- shards

def open_shard(shard: Shard) -> np.ndarray:
    """A shard as a read-only 2-D float array (memory-mapped when it is a path)."""
    if isinstance(shard, np.ndarray):
        arr, name = shard, "<array>"
    else:
        name = str(shard)
        try:
            arr = np.load(shard, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise InputError(name, f"cannot read as a .npy array: {exc}") from exc
    if arr.ndim != 2:
        raise InputError(name, f"expected a 2-D [rows, dim] array, got shape {arr.shape}")
    if arr.dtype.kind != "f":
        raise InputError(name, f"expected float16/float32 embeddings, got dtype {arr.dtype}")
    return arr


def shard_shapes(shards: Sequence[Shard]) -> tuple[list[int], int]:
    """Rows per shard and the common dimension (checked equal across shards)."""
    if not shards:
        raise ValueError("no shards given")
    rows, dim = [], None
    for shard in shards:
        arr = open_shard(shard)
        if dim is None:
            dim = arr.shape[1]
        elif arr.shape[1] != dim:
            name = "<array>" if isinstance(shard, np.ndarray) else str(shard)
            raise InputError(name, f"dimension {arr.shape[1]} differs from the first shard's {dim}")
        rows.append(arr.shape[0])
        del arr  # drop the memory map before opening the next one
    if dim < 1:
        raise ValueError("embeddings have dimension 0")
    return rows, dim


def _float32_blocks(arr: np.ndarray, batch: int = ADD_BATCH_ROWS):
    """Yield contiguous float32 copies of ``arr`` in row blocks of at most ``batch``."""
    for start in range(0, arr.shape[0], batch):
        yield np.ascontiguousarray(arr[start:start + batch], dtype=np.float32)


def _training_sample(shards: Sequence[Shard], rows: list[int], size: int, seed: int) -> np.ndarray:
    """``size`` rows drawn uniformly without replacement (seeded), as float32.

    Sorted row ids let each shard be read with one fancy index into its memory map,
    touching only the sampled rows.
    """
    total = sum(rows)
    picks = np.sort(np.random.default_rng(seed).choice(total, size=size, replace=False))
    parts, offset = [], 0
    for shard, n in zip(shards, rows):
        local = picks[(picks >= offset) & (picks < offset + n)] - offset
        if len(local):
            parts.append(np.asarray(open_shard(shard)[local], dtype=np.float32))
        offset += n
    return np.ascontiguousarray(np.concatenate(parts))


# --------------------------------------------------------------------------- build / io

def build_index(shards: Sequence[Shard], *, index_type: str = "flat", nlist: int | None = None,
                hnsw_m: int = 32, ef_construction: int = 200, pq_m: int | None = None, pq_bits: int = 8,
                train_size: int | None = None, seed: int = 0, use_gpu="auto", progress: bool = True):
    """Build an inner-product faiss index over the rows of ``shards`` (in order).

    ``shards`` are ``.npy`` paths (or in-memory arrays) of shape ``[rows, dim]``; index
    id ``r`` is row ``r`` of their concatenation.  Shards are added one at a time, in
    float32 blocks of :data:`ADD_BATCH_ROWS`, so memory is the index plus one block.

    IVF parameters: ``nlist`` defaults to :func:`default_nlist`; the coarse quantizer
    (and PQ codebooks) train on ``train_size`` rows sampled with ``seed``, by default
    ``min(n, max(39 * nlist, 10000))`` (and at least ``39 * 2**pq_bits`` for ivf_pq).
    ``pq_m`` defaults to :func:`default_pq_m`.  HNSW: ``hnsw_m`` links per node,
    ``ef_construction`` build-time beam.  Search-time parameters (``nprobe``,
    ``efSearch``) are set with :func:`set_search_params` or :func:`load_index`.

    ``use_gpu``: see the module docstring; HNSW always stays on the CPU.
    """
    _require_faiss()
    if index_type not in INDEX_TYPES:
        raise ValueError(f"index_type must be one of {INDEX_TYPES}, not {index_type!r}")
    on_gpu = _resolve_gpu(use_gpu) and index_type != "hnsw"
    rows, dim = shard_shapes(shards)
    n = sum(rows)
    if n == 0:
        raise ValueError("the shards hold no rows")

    ip = faiss.METRIC_INNER_PRODUCT
    train_rows = 0
    if index_type == "flat":
        index = faiss.IndexFlatIP(dim)
    elif index_type == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, ip)
        index.hnsw.efConstruction = ef_construction
    else:
        nlist = default_nlist(n) if nlist is None else int(nlist)
        if not 1 <= nlist <= n:
            raise ValueError(f"nlist must be in [1, {n}] (the number of rows), got {nlist}")
        minimum = _MIN_POINTS_PER_CENTROID * nlist
        if index_type == "ivf_flat":
            index = faiss.index_factory(dim, f"IVF{nlist},Flat", ip)
        else:
            pq_m = default_pq_m(dim) if pq_m is None else int(pq_m)
            if pq_m < 1 or dim % pq_m:
                raise ValueError(f"pq_m must divide the dimension {dim}, got {pq_m}")
            if 2 ** pq_bits > n:
                raise ValueError(f"ivf_pq with pq_bits={pq_bits} needs at least {2 ** pq_bits} rows to train "
                                 f"its codebooks, the shards hold {n}")
            minimum = max(minimum, _MIN_POINTS_PER_CENTROID * 2 ** pq_bits)
            index = faiss.index_factory(dim, f"IVF{nlist},PQ{pq_m}x{pq_bits}", ip)
            # The factory turns on polysemous training (a Hamming-order codebook
            # permutation, only used by polysemous search, which we never do): it costs
            # seconds even on toy data, so skip it.
            index.do_polysemous_training = False
            index.pq.cp.seed = seed
        index.cp.seed = seed  # k-means initialisation, so equal seeds give equal indexes
        train_rows = min(n, max(minimum, 10_000)) if train_size is None else min(n, int(train_size))
        if train_rows < nlist:
            raise ValueError(f"train_size={train_rows} is below nlist={nlist}: k-means needs a point per centroid")

    if on_gpu:
        index = _to_gpu(index, index_type)

    log.info("building %s index over %d rows x %d dims from %d shard(s)%s", index_type, n, dim, len(shards),
             " on GPU" if on_gpu else "")
    if train_rows:
        sample = _training_sample(shards, rows, train_rows, seed)
        log.info("training on %d sampled rows", train_rows)
        index.train(sample)
        del sample

    for shard in tqdm(shards, desc=f"index add ({index_type})", unit="shard", disable=not progress):
        arr = open_shard(shard)
        for block in _float32_blocks(arr):
            index.add(block)
        del arr
    if index.ntotal != n:  # a guard against a faiss add silently dropping rows
        raise RuntimeError(f"index holds {index.ntotal} rows, the shards {n}")
    return index


def set_search_params(index, *, nprobe: int | None = None, ef_search: int | None = None):
    """Set search-time parameters where they apply and return ``index``.

    ``nprobe`` (IVF types; clipped to ``nlist``) and ``ef_search`` (HNSW) are ignored,
    with a log message, for index types they do not apply to, so one configuration can
    serve every index type.
    """
    if nprobe is not None:
        if nprobe < 1:
            raise ValueError(f"nprobe must be >= 1, got {nprobe}")
        if _is_gpu_index(index):
            # GPU IVF indexes expose nprobe/nlist directly (IndexIVFInterface); a GPU
            # flat index has neither. Untested here: this machine has no GPU.
            ivf = index if hasattr(index, "nprobe") and hasattr(index, "nlist") else None
        else:
            ivf = faiss.try_extract_index_ivf(index)
        if ivf is not None:
            ivf.nprobe = min(int(nprobe), int(ivf.nlist))
        else:
            log.info("nprobe=%s ignored: %s is not an IVF index", nprobe, type(index).__name__)
    if ef_search is not None:
        if ef_search < 1:
            raise ValueError(f"ef_search must be >= 1, got {ef_search}")
        if isinstance(index, faiss.IndexHNSW):
            index.hnsw.efSearch = int(ef_search)
        else:
            log.info("ef_search=%s ignored: %s is not an HNSW index", ef_search, type(index).__name__)
    return index


def save_index(index, path: str | Path) -> None:
    """Write ``index`` to ``path`` atomically (a temporary name, then ``os.replace``).

    GPU indexes are copied back to the CPU first: faiss can only serialize CPU indexes,
    and a saved index must load on machines without a GPU.
    """
    _require_faiss()
    if _is_gpu_index(index):
        index = faiss.index_gpu_to_cpu(index)
    with atomic_path(path) as tmp:
        faiss.write_index(index, str(tmp))


def load_index(path: str | Path, *, use_gpu="auto", nprobe: int | None = None, ef_search: int | None = None):
    """Read an index written by :func:`save_index`, optionally onto the GPU (not HNSW),
    and set its search-time parameters (see :func:`set_search_params`)."""
    _require_faiss()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such index file")
    wants_gpu = _resolve_gpu(use_gpu)
    index = faiss.read_index(str(path))
    set_search_params(index, nprobe=nprobe, ef_search=ef_search)
    if wants_gpu and not isinstance(index, faiss.IndexHNSW):  # untested here: no GPU
        is_ivf = faiss.try_extract_index_ivf(index) is not None
        index = _to_gpu(index, "ivf_pq" if isinstance(index, faiss.IndexIVFPQ) else "other")
        if is_ivf and nprobe is not None:
            # The cloner copies nprobe in current faiss; setting it again does not rely on that.
            set_search_params(index, nprobe=nprobe)
    return index


# --------------------------------------------------------------------------- search

def search(index, queries: np.ndarray, k: int, *, batch_size: int = 4096,
           progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` rows for each query, in query batches of ``batch_size``.

    Returns ``(scores float32 [n, k], rows int64 [n, k])`` sorted by decreasing score;
    where fewer than ``k`` rows are found the row is -1 and the score ``-inf``.
    (faiss GPU indexes cap ``k`` at 2048.)
    """
    queries = np.asarray(queries)
    if queries.ndim != 2 or queries.shape[1] != index.d:
        raise ValueError(f"queries must have shape [n, {index.d}], got {queries.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = queries.shape[0]
    scores = np.empty((n, k), dtype=np.float32)
    rows = np.empty((n, k), dtype=np.int64)
    starts = range(0, n, batch_size)
    for start in tqdm(starts, desc="search", unit="batch", disable=not progress):
        q = np.ascontiguousarray(queries[start:start + batch_size], dtype=np.float32)
        d, i = index.search(q, k)
        scores[start:start + len(q)] = d
        rows[start:start + len(q)] = i
    scores[rows < 0] = -np.inf  # faiss pads with -FLT_MAX; -inf cannot be mistaken for a score
    return scores, rows


def aggregate_max(scores: np.ndarray, rows: np.ndarray, row_to_doc: np.ndarray | None,
                  k: int) -> tuple[np.ndarray, np.ndarray]:
    """Collapse row hits to document hits: a document scores the max over its chunk rows.

    ``scores``/``rows`` are ``[n, K]`` search results (rows -1 = no hit); ``row_to_doc``
    maps each row to its document row, or is ``None`` when rows are documents (FirstP:
    then this only truncates/pads to ``k``).  Returns ``(doc_scores float32 [n, k], docs
    int64 [n, k])`` by decreasing score (ties by document id), padded with docs -1 and
    scores ``-inf``.  For MaxP, search ``K`` > ``k`` rows so that ``k`` distinct
    documents survive.
    """
    scores = np.asarray(scores, dtype=np.float32)
    rows = np.asarray(rows, dtype=np.int64)
    if scores.shape != rows.shape or scores.ndim != 2:
        raise ValueError(f"scores and rows must be equal-shaped 2-D arrays, got {scores.shape} and {rows.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n, width = rows.shape
    valid = rows >= 0
    if row_to_doc is None:
        docs = rows
    else:
        row_to_doc = np.asarray(row_to_doc, dtype=np.int64)
        if valid.any() and rows[valid].max() >= len(row_to_doc):
            raise IndexError(f"row {rows[valid].max()} is beyond row_to_doc (length {len(row_to_doc)})")
        docs = np.where(valid, row_to_doc[np.where(valid, rows, 0)], -1)

    out_scores = np.full((n, k), -np.inf, dtype=np.float32)
    out_docs = np.full((n, k), -1, dtype=np.int64)
    q = np.broadcast_to(np.arange(n)[:, None], (n, width))[valid]
    d, s = docs[valid], scores[valid]
    if row_to_doc is not None and len(d):
        # Keep each (query, doc)'s best row: sort by query, doc, decreasing score, take firsts.
        order = np.lexsort((-s, d, q))
        q, d, s = q[order], d[order], s[order]
        first = np.ones(len(q), dtype=bool)
        first[1:] = (q[1:] != q[:-1]) | (d[1:] != d[:-1])
        q, d, s = q[first], d[first], s[first]
    # Rank within each query by decreasing score (ties: smaller doc id first).
    order = np.lexsort((d, -s, q))
    q, d, s = q[order], d[order], s[order]
    group_start = np.searchsorted(q, q, side="left")
    rank = np.arange(len(q)) - group_start
    keep = rank < k
    out_scores[q[keep], rank[keep]] = s[keep]
    out_docs[q[keep], rank[keep]] = d[keep]
    return out_scores, out_docs


def recall_at(approx_rows: np.ndarray, exact_rows: np.ndarray, k: int) -> float:
    """Mean over queries of ``|approx top-k ∩ exact top-k| / k`` (-1 entries ignored)."""
    approx_rows, exact_rows = np.asarray(approx_rows), np.asarray(exact_rows)
    if approx_rows.ndim != 2 or exact_rows.ndim != 2 or len(approx_rows) != len(exact_rows):
        raise ValueError(f"expected two [n, K] arrays with equal n, got {approx_rows.shape} and {exact_rows.shape}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if len(approx_rows) == 0:
        raise ValueError("no queries")
    total = 0
    for a, e in zip(approx_rows[:, :k], exact_rows[:, :k]):
        total += len((set(a.tolist()) & set(e.tolist())) - {-1})
    return total / (k * len(approx_rows))


def export_pyserini(out_dir: str | Path, docids: Sequence[str], *, shards: Sequence[Shard] | None = None,
                    index_path: str | Path | None = None) -> int:
    """A folder Pyserini's ``FaissSearcher`` opens: ``index`` (a faiss index) and ``docid`` (one id per
    index row, in row order). From an approximate index's file, or for exact search a float32
    ``IndexFlatIP`` built from the shards (what FaissSearcher searches: 4 bytes a dimension). With
    MaxP each chunk row is listed under its document's id. Written atomically; returns the rows."""
    _require_faiss()
    out_dir = Path(out_dir)
    with atomic_path(out_dir) as tmp:
        tmp.mkdir(parents=True)
        if index_path is not None:
            index = faiss.read_index(str(index_path))
        else:
            index = build_index(list(shards), index_type="flat", use_gpu=False)
        if index.ntotal != len(docids):
            raise ValueError(f"the index has {index.ntotal} rows but there are {len(docids)} docids")
        faiss.write_index(index, str(tmp / "index"))
        with open(tmp / "docid", "w", encoding="utf-8") as fh:
            fh.writelines(f"{d}\n" for d in docids)
    return len(docids)
