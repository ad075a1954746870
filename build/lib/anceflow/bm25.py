"""BM25 with Pyserini's Anserini (Lucene): index the prepared collection, batch-retrieve runs.

Indexing and retrieval call Anserini's own multi-threaded command-line tools
(IndexCollection, SearchCollection), which write TREC runs directly; see
``anceflow.java`` for how Java is found. Text is the prepared document text (title and
body joined, as in Anserini's BEIR "flat" regressions).

At MS MARCO's size: IndexCollection indexes one input file per thread, so the collection is
written as several JSONL files (at least one per thread). SearchCollection keeps every
query's hits on the Java heap until it ends (~84 bytes a hit: 503k queries x 200 ~ 8.5 GB),
and under heap pressure it slows to a crawl without failing; so queries go through it in
chunks sized to a heap derived from the job's memory (``-Xmx``), and the chunks' runs are
concatenated in order.
"""

from __future__ import annotations

import json
import logging
import shutil
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


#: Documents per JsonCollection file at most (IndexCollection gives each file to one thread).
DOCS_PER_FILE = 1_000_000
#: Java heap per hit that SearchCollection holds until its end (measured ~84 bytes), with room to spare.
HEAP_BYTES_PER_HIT = 200
#: Share of the job's memory given to the Java heap (Lucene reads the index through the page cache).
HEAP_SHARE = 0.5


def heap_mb(mem_mb: int | None) -> int | None:
    """The -Xmx for a job with ``mem_mb`` of memory (None: the JVM's default, 25% of the machine)."""
    return None if not mem_mb else max(512, int(mem_mb * HEAP_SHARE))


def chunk_queries(hits: int, heap: int | None, most: int = 100_000) -> int:
    """Queries per SearchCollection call whose hits fit in half of a ``heap`` MB heap."""
    if heap is None:
        return most
    return max(1000, min(most, int(heap * 2**20 * 0.5 // (hits * HEAP_BYTES_PER_HIT))))


def write_json_collection(collection: str | Path, out_dir: str | Path, *, files: int = 1,
                          progress: bool = True) -> int:
    """Write the collection as Anserini JsonCollection (``{"id", "contents"}`` per line) in ``files``
    files of consecutive documents (at least one per :data:`DOCS_PER_FILE`)."""
    total = pq.ParquetFile(collection).metadata.num_rows
    files = max(1, files, -(-total // DOCS_PER_FILE))
    per_file = -(-total // files)
    n, handle = 0, None
    try:
        with tqdm(total=total, desc="bm25 docs", disable=not progress, mininterval=2) as bar:
            for pids, texts in iter_documents(collection, 50_000):
                for pid, text in zip(pids, texts):
                    if n % per_file == 0:
                        if handle:
                            handle.close()
                        handle = open(Path(out_dir) / f"docs{n // per_file:03d}.jsonl", "w", encoding="utf-8")
                    handle.write(json.dumps({"id": pid, "contents": text}, ensure_ascii=False) + "\n")
                    n += 1
                bar.update(len(pids))
    finally:
        if handle:
            handle.close()
    return n


def build_index(collection: str | Path, index_dir: str | Path, *, threads: int = 1, java: str | None = None,
                mem_mb: int | None = None, log_file=None, progress: bool = True) -> None:
    """Build a Lucene BM25 index of ``collection.parquet`` in ``index_dir`` (atomically), with
    ``threads`` indexing threads (one input file each)."""
    index_dir = Path(index_dir)
    with atomic_path(index_dir) as tmp:
        docs = tmp / "input"
        docs.mkdir(parents=True)
        write_json_collection(collection, docs, files=threads, progress=progress)
        run_anserini("io.anserini.index.IndexCollection", [
            "-collection", "JsonCollection", "-input", docs, "-index", tmp / "lucene",
            "-generator", "DefaultLuceneDocumentGenerator", "-threads", threads,
        ], java=java, heap_mb=heap_mb(mem_mb), log_file=log_file)
        shutil.rmtree(docs)


def search(index_dir: str | Path, queries: str | Path, run_path: str | Path, *, k1: float, b: float, hits: int,
           threads: int = 1, java: str | None = None, mem_mb: int | None = None, chunk: int | None = None,
           log_file=None, progress: bool = True) -> int:
    """Retrieve the top ``hits`` documents for every query of ``queries.parquet`` into a TREC run.

    Queries go to Anserini in chunks of ``chunk`` (default: what a heap of half ``mem_mb`` holds,
    see :func:`chunk_queries`); the run lists them in the order of the queries file.
    """
    table = pq.read_table(queries, columns=["qid", "text"]).to_pydict()
    topics = [(qid, _clean(text)) for qid, text in zip(table["qid"], table["text"])]
    kept = [(qid, text) for qid, text in topics if text]  # an empty query matches nothing; Anserini rejects it
    if len(kept) < len(topics):
        log.warning("%d empty queries skipped", len(topics) - len(kept))
    heap = heap_mb(mem_mb)
    chunk = chunk or chunk_queries(hits, heap)
    run_path = Path(run_path)
    with atomic_path(run_path) as tmp_run, open(tmp_run, "wb") as out:
        part_topics = tmp_run.with_name(tmp_run.name + ".topics.tsv")
        part_run = tmp_run.with_name(tmp_run.name + ".part")
        try:
            with tqdm(total=len(kept), desc="bm25 search", unit=" queries", disable=not progress,
                      mininterval=2) as bar:
                for start in range(0, len(kept), chunk):
                    part = kept[start:start + chunk]
                    part_topics.write_text("".join(f"{qid}\t{text}\n" for qid, text in part), encoding="utf-8")
                    run_anserini("io.anserini.search.SearchCollection", [
                        "-index", Path(index_dir) / "lucene", "-topicReader", "TsvString", "-topics", part_topics,
                        "-output", part_run, "-bm25", "-bm25.k1", k1, "-bm25.b", b, "-hits", hits,
                        "-threads", threads,
                    ], java=java, heap_mb=heap, log_file=log_file)
                    with open(part_run, "rb") as fh:
                        shutil.copyfileobj(fh, out)
                    bar.update(len(part))
        finally:
            part_topics.unlink(missing_ok=True)
            part_run.unlink(missing_ok=True)
    return len(kept)
