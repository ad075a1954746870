"""BM25 with Pyserini's Anserini (Lucene): index the prepared collection, batch-retrieve runs.

Indexing and retrieval call Anserini's own multi-threaded command-line tools
(IndexCollection, SearchCollection), which write TREC runs directly; see
``anceflow.java`` for how Java is found. Text is the prepared document text (title and
body joined, as in Anserini's BEIR "flat" regressions).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow.parquet as pq
from tqdm.auto import tqdm

from anceflow.io import atomic_path
from anceflow.java import run_anserini
from anceflow.prepare import iter_documents

log = logging.getLogger(__name__)


def _clean(text: str) -> str:
    # Anserini's TSV topic reader splits on tabs; newlines would end the line.
    return " ".join(text.split())


def write_json_collection(collection: str | Path, out_dir: str | Path, *, progress: bool = True) -> int:
    """Write the collection as Anserini JsonCollection (``{"id", "contents"}`` per line)."""
    out = Path(out_dir) / "docs.jsonl"
    n = 0
    total = pq.ParquetFile(collection).metadata.num_rows
    with open(out, "w", encoding="utf-8") as fh, tqdm(total=total, desc="bm25 docs", disable=not progress,
                                                    mininterval=2) as bar:
        for pids, texts in iter_documents(collection, 50_000):
            for pid, text in zip(pids, texts):
                fh.write(json.dumps({"id": pid, "contents": text}, ensure_ascii=False) + "\n")
            n += len(pids)
            bar.update(len(pids))
    return n


def build_index(collection: str | Path, index_dir: str | Path, *, threads: int = 1, java: str | None = None,
                log_file=None, progress: bool = True) -> None:
    """Build a Lucene BM25 index of ``collection.parquet`` in ``index_dir`` (atomically)."""
    index_dir = Path(index_dir)
    with atomic_path(index_dir) as tmp:
        docs = tmp / "input"
        docs.mkdir(parents=True)
        write_json_collection(collection, docs, progress=progress)
        run_anserini("io.anserini.index.IndexCollection", [
            "-collection", "JsonCollection", "-input", docs, "-index", tmp / "lucene",
            "-generator", "DefaultLuceneDocumentGenerator", "-threads", threads,
        ], java=java, log_file=log_file)
        (docs / "docs.jsonl").unlink()
        docs.rmdir()


def search(index_dir: str | Path, queries: str | Path, run_path: str | Path, *, k1: float, b: float, hits: int,
           threads: int = 1, java: str | None = None, log_file=None) -> int:
    """Retrieve the top ``hits`` documents for every query of ``queries.parquet`` into a TREC run."""
    table = pq.read_table(queries, columns=["qid", "text"]).to_pydict()
    run_path = Path(run_path)
    with atomic_path(run_path) as tmp_run:
        topics = tmp_run.with_name(tmp_run.name + ".topics.tsv")
        kept = 0
        with open(topics, "w", encoding="utf-8") as fh:
            for qid, text in zip(table["qid"], table["text"]):
                if _clean(text):  # an empty query matches nothing; Anserini would reject the line
                    fh.write(f"{qid}\t{_clean(text)}\n")
                    kept += 1
        if kept < len(table["qid"]):
            log.warning("%d empty queries skipped", len(table["qid"]) - kept)
        try:
            if kept:
                run_anserini("io.anserini.search.SearchCollection", [
                    "-index", Path(index_dir) / "lucene", "-topicReader", "TsvString", "-topics", topics,
                    "-output", tmp_run, "-bm25", "-bm25.k1", k1, "-bm25.b", b, "-hits", hits, "-threads", threads,
                ], java=java, log_file=log_file)
            else:
                tmp_run.touch()
        finally:
            topics.unlink(missing_ok=True)
    return kept
