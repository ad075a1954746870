"""Search: query vectors against a faiss index -> a TREC run over document ids.

With MaxP a document has several rows (chunks) in the index; we fetch ``depth * chunks``
rows so that ``depth`` distinct documents survive when each keeps only its best chunk.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from anceflow.evaluate import write_run
from anceflow.index import aggregate_max, load_index, search


def dense_run(index_path: str | Path, query_vectors: str | Path, query_rows: str | Path, corpus_rows: str | Path,
              collection: str | Path, run_path: str | Path, *, depth: int, chunks: int = 1, tag: str = "dense",
              nprobe: int | None = None, ef_search: int | None = None, use_gpu="auto") -> dict:
    """Search every query and write the top ``depth`` documents per query as a TREC run."""
    index = load_index(index_path, use_gpu=use_gpu, nprobe=nprobe, ef_search=ef_search)
    queries = np.asarray(np.load(query_vectors, mmap_mode="r"), dtype=np.float32)
    qids = pd.read_parquet(query_rows, columns=["qid"])["qid"].tolist()
    pids = pq.read_table(collection, columns=["pid"]).column("pid").to_pylist()
    row_to_doc = pd.read_parquet(corpus_rows, columns=["doc"])["doc"].to_numpy() if chunks > 1 else None
    k = min(depth * chunks, index.ntotal)
    scores, rows = search(index, queries, k)
    scores, docs = aggregate_max(scores, rows, row_to_doc, min(depth, len(pids)))
    run = {}
    for qid, doc_row, score in zip(qids, docs, scores):
        keep = doc_row >= 0
        run[qid] = {pids[d]: float(s) for d, s in zip(doc_row[keep], score[keep])}
    write_run(run_path, run, tag, depth=depth)
    return {"queries": len(qids), "depth": depth, "index_rows": int(index.ntotal)}
