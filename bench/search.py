"""Index and search: exact flat vs each approximate ``index.type``, through ``anceflow.index``.

Two vector sets:

- SciFact: the corpus and dev-query vectors of a checkpoint the bench config's workflow run
  encoded (``results/<name>/embeddings/<system>/``; default system round-2, which
  bench/rounds_scifact.py produces, else any system found);
- synthetic: --synthetic rows x 384 float32 (default 1,000,000), clustered like text
  embeddings (4,096 Gaussian clusters, unit length), and --queries queries drawn the same way.

For each index type with the pipeline's defaults (nlist about 4 sqrt(n), nprobe 32, HNSW M 32 and
efSearch 128, ivf_pq's default pq_m): build time, queries/s for the top 100 (--threads threads),
the index's size (serialized; what it holds in memory, up to small overheads), and recall@100
against the exact flat results. On the synthetic set HNSW is built with efConstruction 40
(faiss's default) instead of the pipeline's 200, which takes over 10 minutes on 2 cores at 1M.

    python bench/search.py [--synthetic 1000000] [--queries 1000] [--system round-2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from common import REPO, Figures, add_record_args

NOISE = 0.35  # per dimension, around unit-variance centres: a harder set for ANN than real embeddings (compare SciFact)
TYPES = ("flat", "ivf_flat", "hnsw", "ivf_pq")


def clustered(n: int, dim: int, rng: np.random.Generator, centers: np.ndarray) -> np.ndarray:
    x = centers[rng.integers(0, len(centers), n)]
    x += NOISE * rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def run(out: Figures, label: str, shards: list, queries: np.ndarray, k: int, ef_construction: int) -> None:
    from anceflow.index import build_index, recall_at, search, set_search_params

    n = sum(len(np.load(s, mmap_mode="r")) if isinstance(s, (str, Path)) else len(s) for s in shards)
    out(f"{label}: {n:,} vectors x {queries.shape[1]}, {len(queries):,} queries, top {k}, "
        f"{faiss.omp_get_max_threads()} threads")
    out(f"  {'type':<9} {'build s':>8} {'queries/s':>10} {'size MB':>8} {'recall@100':>10}")
    exact = None
    for index_type in TYPES:
        t = time.perf_counter()
        index = build_index(shards, index_type=index_type, ef_construction=ef_construction, use_gpu=False,
                            progress=False)
        build = time.perf_counter() - t
        set_search_params(index, nprobe=32, ef_search=128)
        search(index, queries[:10], k)  # warm-up
        t = time.perf_counter()
        _, rows = search(index, queries, k)
        qps = len(queries) / (time.perf_counter() - t)
        size = faiss.serialize_index(index).nbytes / 2**20
        if exact is None:
            exact = rows
        out(f"  {index_type:<9} {build:8.1f} {qps:10,.0f} {size:8.0f} {recall_at(rows, exact, k):10.3f}")
        del index


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(REPO / "results/scifact-minilm"))
    ap.add_argument("--system", default="round-2")
    ap.add_argument("--synthetic", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=faiss.omp_get_max_threads())
    add_record_args(ap)
    args = ap.parse_args()
    faiss.omp_set_num_threads(args.threads)
    out = Figures("search", "Index and search: flat vs approximate index types")

    emb = Path(args.results) / "embeddings"
    systems = [args.system] + sorted(p.name for p in emb.glob("*")) if emb.exists() else []
    found = next((emb / s for s in systems if sorted((emb / s).glob("corpus.*.npy"))), None)
    if found is None:
        out(f"SciFact: no embeddings under {emb}; run `python bench/rounds_scifact.py` (or the zeroshot target) first")
    else:
        shards = sorted(found.glob("corpus.*.npy"))
        queries = np.load(found / "queries.dev.npy").astype(np.float32)
        run(out, f"SciFact ({found.relative_to(REPO) if found.is_relative_to(REPO) else found})", shards, queries, 100,
            200)

    rng = np.random.default_rng(0)
    centers = rng.standard_normal((4096, 384), dtype=np.float32)
    # Built in blocks so generating 1M rows needs no second copy.
    blocks = [clustered(min(100_000, args.synthetic - s), 384, rng, centers) for s in range(0, args.synthetic, 100_000)]
    queries = clustered(args.queries, 384, rng, centers)
    run(out, "synthetic (clustered)", blocks, queries, 100, 40)
    out.record(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
