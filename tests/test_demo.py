"""Tests for the synthetic demo data set (anceflow.prepare.demo)."""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path

import pytest

from anceflow.prepare.demo import CONCEPTS, concept_of, generate_demo

FILES = ("collection.tsv", "queries.train.tsv", "queries.dev.tsv", "qrels.train.tsv", "qrels.dev.tsv")
SMALL = dict(n_passages=300, n_train=40, n_dev=20)


def _read_tsv(path: Path) -> list[list[str]]:
    text = path.read_text(encoding="utf-8")
    assert text.endswith("\n") and "\r" not in text
    return [line.split("\t") for line in text.splitlines()]


@pytest.fixture(scope="module")
def default_demo(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    """The default demo (seed 13, 2000 passages, 300 train, 100 dev), made once."""
    out = tmp_path_factory.mktemp("demo")
    return out, generate_demo(out)


# --------------------------------------------------------------------------- determinism


def test_same_seed_is_byte_identical(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    generate_demo(a, seed=7, **SMALL)
    generate_demo(b, seed=7, **SMALL)
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_different_seed_differs(tmp_path):
    generate_demo(tmp_path / "a", seed=7, **SMALL)
    generate_demo(tmp_path / "b", seed=8, **SMALL)
    for name in ("collection.tsv", "queries.train.tsv", "queries.dev.tsv"):
        assert (tmp_path / "a" / name).read_bytes() != (tmp_path / "b" / name).read_bytes(), name


# --------------------------------------------------------------------------- format


def test_counts_and_format(default_demo):
    out, counts = default_demo
    assert set(FILES) <= {p.name for p in out.iterdir()}

    collection = _read_tsv(out / "collection.tsv")
    assert all(len(row) == 2 for row in collection)
    pids = [pid for pid, _ in collection]
    assert pids == [str(i) for i in range(2000)]  # unique integer ids, in order
    assert counts["passages"] == 2000
    for _, text in collection:
        assert text.strip() and text == text.strip()
        assert 15 <= len(text.split()) <= 40

    qids_by_split = {}
    for split, n in (("train", 300), ("dev", 100)):
        queries = _read_tsv(out / f"queries.{split}.tsv")
        assert len(queries) == n == counts[f"{split}_queries"]
        assert all(len(row) == 2 and row[0].isdigit() and row[1].strip() for row in queries)
        assert all(4 <= len(text.split()) <= 8 for _, text in queries)
        qids = [qid for qid, _ in queries]
        assert len(set(qids)) == n
        qids_by_split[split] = set(qids)

        qrels = _read_tsv(out / f"qrels.{split}.tsv")
        assert len(qrels) == counts[f"{split}_qrels"]
        assert all(len(row) == 4 and row[1] == "0" and row[3] == "1" for row in qrels)
        assert {qid for qid, *_ in qrels} == set(qids)  # every query has a positive
        assert {pid for _, _, pid, _ in qrels} <= set(pids)
        assert len({(qid, pid) for qid, _, pid, _ in qrels}) == len(qrels)
        per_query = Counter(qid for qid, *_ in qrels)
        assert set(per_query.values()) <= {1, 2}
        assert 1 <= sum(v == 2 for v in per_query.values()) <= n // 5  # some near-duplicates

    assert not qids_by_split["train"] & qids_by_split["dev"]


def test_train_and_dev_target_disjoint_passages(default_demo):
    out, _ = default_demo
    train = {row[2] for row in _read_tsv(out / "qrels.train.tsv")}
    dev = {row[2] for row in _read_tsv(out / "qrels.dev.tsv")}
    assert not train & dev


def test_relevance_is_well_defined(default_demo):
    """A query's concepts occur together in its relevant passages and nowhere else."""
    out, _ = default_demo
    passage_concepts = {
        pid: {concept_of(w) for w in text.split()} - {None} for pid, text in _read_tsv(out / "collection.tsv")
    }
    for split in ("train", "dev"):
        relevant = defaultdict(set)
        for qid, _, pid, _ in _read_tsv(out / f"qrels.{split}.tsv"):
            relevant[qid].add(pid)
        for qid, text in _read_tsv(out / f"queries.{split}.tsv"):
            wanted = {concept_of(w) for w in text.split()} - {None}
            assert 3 <= len(wanted) <= 7
            holders = {pid for pid, cs in passage_concepts.items() if wanted <= cs}
            assert holders == relevant[qid], qid


def test_too_few_passages_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="passages"):
        generate_demo(tmp_path, n_passages=10, n_train=8, n_dev=5)


def test_tiny_sizes_work(tmp_path):
    counts = generate_demo(tmp_path, n_passages=10, n_train=1, n_dev=1)
    assert counts["passages"] == 10 and counts["train_queries"] == counts["dev_queries"] == 1


def test_vocabulary_words_are_unique():
    words = [w for forms in CONCEPTS for w in forms]
    assert len(words) == len(set(words))
    assert all(2 <= len(forms) <= 3 for forms in CONCEPTS)
    assert all(w.isalpha() and w.islower() for w in words)


# --------------------------------------------------------------------------- intended property


def _bm25_mrr10(collection, queries, qrels, analyze, k1=0.9, b=0.4) -> float:
    """MRR@10 of plain BM25 (Lucene-style IDF) with tokenizer ``analyze``."""
    docs = {pid: Counter(analyze(text)) for pid, text in collection}
    lengths = {pid: sum(tf.values()) for pid, tf in docs.items()}
    avgdl = sum(lengths.values()) / len(lengths)
    postings = defaultdict(list)
    for pid, tf in docs.items():
        for term, n in tf.items():
            postings[term].append((pid, n))
    n_docs = len(docs)
    relevant = defaultdict(set)
    for qid, _, pid, _ in qrels:
        relevant[qid].add(pid)

    total = 0.0
    for qid, text in queries:
        scores = defaultdict(float)
        for term in analyze(text):  # a repeated query term counts again, as in Lucene
            plist = postings.get(term, ())
            idf = math.log(1 + (n_docs - len(plist) + 0.5) / (len(plist) + 0.5))
            for pid, tf in plist:
                norm = k1 * (1 - b + b * lengths[pid] / avgdl)
                scores[pid] += idf * tf * (k1 + 1) / (tf + norm)
        # Ties broken by pid so the figure is deterministic.
        ranking = sorted(scores, key=lambda pid: (-scores[pid], int(pid)))[:10]
        total += next((1 / r for r, pid in enumerate(ranking, 1) if pid in relevant[qid]), 0.0)
    return total / len(queries)


def test_bm25_is_imperfect_but_concepts_decide_relevance(default_demo):
    """The demo's point: literal match misleads, meaning (concepts) does not."""
    out, _ = default_demo
    collection = _read_tsv(out / "collection.tsv")
    queries = _read_tsv(out / "queries.dev.tsv")
    qrels = _read_tsv(out / "qrels.dev.tsv")

    def words(text):
        return text.split()

    def oracle(text):  # every synonym replaced by its concept id
        return [f"#{c}" if (c := concept_of(w)) is not None else w for w in text.split()]

    plain = _bm25_mrr10(collection, queries, qrels, words)
    mapped = _bm25_mrr10(collection, queries, qrels, oracle)
    print(f"\ndemo dev MRR@10: plain BM25 {plain:.3f}, concept-mapped (oracle) BM25 {mapped:.3f}")
    assert 0.2 <= plain <= 0.75
    assert mapped > 0.85
    assert mapped - plain > 0.2
