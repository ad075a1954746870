"""Tests for anceflow.tokenize with the real all-MiniLM-L6-v2 tokenizer (packaged, offline)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from anceflow.prepare import document_text, prepare_local
from anceflow.tokenize import (
    HEADER_BYTES,
    NpyAppender,
    TokenTable,
    encode_texts,
    load_tokenizer,
    special_tokens,
    tokenize_corpus,
    tokenize_queries,
)

MODEL = "sentence-transformers/all-MiniLM-L6-v2"

LONG_TEXT = (
    "An experimental investigation of the aerodynamics of a wing in a slipstream was made in order to "
    "determine the spanwise distribution of the lift increase due to slipstream at different angles of "
    "attack of the wing and at different free stream to slipstream velocity ratios. The results were "
    "intended in part as an evaluation basis for different theoretical treatments of this problem."
)
MEDIUM_TEXT = "boundary layer transition on a flat plate at supersonic speeds with heat transfer and low drag"
EXACT_BODY_TEXT = "boundary layer transition on a flat plate at supersonic speeds with heat transfer"  # 14 tokens


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer(MODEL)


def _ids(tok, text: str, **kw) -> list[int]:
    return tok(text, **kw)["input_ids"]


# --------------------------------------------------------------------------- NpyAppender


def test_npy_appender_empty(tmp_path):
    path = tmp_path / "empty.npy"
    app = NpyAppender(path)
    app.close()
    assert app.count == 0
    assert path.stat().st_size == HEADER_BYTES
    arr = np.load(path, mmap_mode="r")
    assert arr.dtype == np.int32
    assert arr.shape == (0,)
    assert np.load(path).shape == (0,)


def test_npy_appender_many_appends_round_trip(tmp_path):
    path = tmp_path / "many.npy"
    rng = np.random.default_rng(0)
    parts = [rng.integers(-2**31, 2**31 - 1, size=n, dtype=np.int64).astype(np.int32)
             for n in [0, 1, 7, 0, 1000, 3, 0, 4096, 2]]
    app = NpyAppender(path)
    for p in parts:
        app.append(p)
    app.append([5, 6])  # plain lists are converted too
    app.close()
    expected = np.concatenate(parts + [np.array([5, 6], dtype=np.int32)])
    assert app.count == expected.size
    arr = np.load(path, mmap_mode="r")
    assert isinstance(arr, np.memmap)
    assert arr.dtype == np.int32 and arr.shape == expected.shape
    np.testing.assert_array_equal(arr, expected)
    assert path.stat().st_size == HEADER_BYTES + 4 * expected.size


def test_npy_appender_other_dtype(tmp_path):
    path = tmp_path / "i64.npy"
    app = NpyAppender(path, dtype=np.int64)
    app.append(np.array([2**40, -1], dtype=np.int64))
    app.append(np.arange(5))
    app.close()
    arr = np.load(path, mmap_mode="r")
    assert arr.dtype == np.int64
    np.testing.assert_array_equal(arr, [2**40, -1, 0, 1, 2, 3, 4])


# --------------------------------------------------------------------------- encode_texts


def test_special_tokens_are_cls_sep(tok):
    assert special_tokens(tok) == ([tok.cls_token_id], [tok.sep_token_id])


def test_firstp_truncates_and_matches_tokenizer(tok):
    [[row]] = encode_texts(tok, [LONG_TEXT], max_len=16)
    assert len(row) == 16
    assert row[0] == tok.cls_token_id and row[-1] == tok.sep_token_id
    assert row == _ids(tok, LONG_TEXT, truncation=True, max_length=16)
    full = _ids(tok, LONG_TEXT, add_special_tokens=False)
    assert len(full) > 16
    assert row[1:-1] == full[:14]


def test_firstp_short_text_untruncated(tok):
    [[row]] = encode_texts(tok, [MEDIUM_TEXT], max_len=64)
    assert row == _ids(tok, MEDIUM_TEXT)
    assert row[1:-1] == _ids(tok, MEDIUM_TEXT, add_special_tokens=False)
    assert len(row) < 64


def test_maxp_chunks(tok):
    max_len, chunks = 16, 3
    body = max_len - 2
    long_full = _ids(tok, LONG_TEXT, add_special_tokens=False)
    medium_full = _ids(tok, MEDIUM_TEXT, add_special_tokens=False)
    assert len(long_full) > chunks * body and body < len(medium_full) <= 2 * body  # the fixture texts fit the test

    long_chunks, medium_chunks = encode_texts(tok, [LONG_TEXT, MEDIUM_TEXT], max_len, chunks)
    for doc_chunks in (long_chunks, medium_chunks):
        assert 1 <= len(doc_chunks) <= chunks
        for c in doc_chunks:
            assert len(c) <= max_len
            assert c[0] == tok.cls_token_id and c[-1] == tok.sep_token_id
            assert tok.cls_token_id not in c[1:-1] and tok.sep_token_id not in c[1:-1]
    assert len(long_chunks) == 3 and all(len(c) == max_len for c in long_chunks)
    assert sum((c[1:-1] for c in long_chunks), []) == long_full[: chunks * body]
    assert len(medium_chunks) == 2
    assert sum((c[1:-1] for c in medium_chunks), []) == medium_full

    # a text of exactly one chunk body is one full chunk, not one plus an empty one
    exact = _ids(tok, EXACT_BODY_TEXT, add_special_tokens=False)
    assert len(exact) == body
    assert encode_texts(tok, [EXACT_BODY_TEXT], max_len, chunks) == [[[tok.cls_token_id] + exact + [tok.sep_token_id]]]


def test_empty_document_gives_one_row(tok):
    cls_sep = [tok.cls_token_id, tok.sep_token_id]
    assert encode_texts(tok, [""], max_len=16) == [[cls_sep]]
    assert encode_texts(tok, [""], max_len=16, chunks=3) == [[cls_sep]]
    assert encode_texts(tok, ["   "], max_len=16, chunks=3) == [[cls_sep]]


# --------------------------------------------------------------------------- tokenize_corpus / tokenize_queries


DOCS = [  # pid, title, text
    ("007", "Wing", LONG_TEXT),
    ("7", "", MEDIUM_TEXT),
    ("D-3", "", ""),
    ("42", "Short", "a flat plate"),
    ("x9", "Only title", ""),
]
QUERIES = [("0012", "what is the lift of a wing in a slipstream " * 4), ("12", "flat plate"), ("5", "")]


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    (src / "collection.tsv").write_text("".join(f"{p}\t{t}\t{x}\n" for p, t, x in DOCS), encoding="utf-8")
    (src / "queries.dev.tsv").write_text("".join(f"{q}\t{t}\n" for q, t in QUERIES), encoding="utf-8")
    (src / "qrels.dev.tsv").write_text("0012 0 007 1\n", encoding="utf-8")
    out = tmp_path_factory.mktemp("prepared")
    prepare_local(src, out, ["dev"], progress=False)
    return out


def _outputs(prefix: Path) -> list[Path]:
    return [Path(f"{prefix}.{s}") for s in ("tokens.npy", "lengths.npy", "rows.parquet")]


def test_tokenize_corpus_firstp(tmp_path, tok, prepared):
    prefix = tmp_path / "corpus"
    stats = tokenize_corpus(prepared / "collection.parquet", prefix, MODEL, max_len=16, progress=False)
    table = TokenTable.open(prefix)
    assert len(table) == len(DOCS)
    expected = [_ids(tok, document_text(x, t), truncation=True, max_length=16) for _, t, x in DOCS]
    for r, exp in enumerate(expected):
        assert table.row(r).tolist() == exp, r
    assert table.tokens.dtype == np.int32 and table.lengths.dtype == np.int32
    rows = pq.read_table(Path(f"{prefix}.rows.parquet")).to_pydict()
    assert rows == {"row": list(range(len(DOCS))), "pid": [p for p, _, _ in DOCS]}
    assert stats["texts"] == len(DOCS) and stats["rows"] == len(DOCS)
    assert stats["tokens"] == sum(map(len, expected))
    assert stats["max_row_len"] == 16
    assert stats["chunks"] == 1 and stats["max_len"] == 16
    # only the three outputs, no temporaries
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in _outputs(prefix))


def test_tokenize_corpus_maxp(tmp_path, tok, prepared):
    prefix = tmp_path / "corpus"
    stats = tokenize_corpus(prepared / "collection.parquet", prefix, MODEL, max_len=16, chunks=3, progress=False)
    table = TokenTable.open(prefix)
    rows = pq.read_table(Path(f"{prefix}.rows.parquet")).to_pydict()
    assert list(rows) == ["row", "doc", "chunk", "pid"]
    assert rows["row"] == list(range(len(table)))

    expected_rows, expected_doc, expected_chunk, expected_pid = [], [], [], []
    for d, (pid, title, text) in enumerate(DOCS):
        full = _ids(tok, document_text(text, title), add_special_tokens=False)[: 3 * 14]
        pieces = [full[i : i + 14] for i in range(0, len(full), 14)] or [[]]
        for c, piece in enumerate(pieces):
            expected_rows.append([tok.cls_token_id] + piece + [tok.sep_token_id])
            expected_doc.append(d)
            expected_chunk.append(c)
            expected_pid.append(pid)
    assert len(table) == len(expected_rows)
    for r, exp in enumerate(expected_rows):
        assert table.row(r).tolist() == exp, r
    assert rows["doc"] == expected_doc
    assert rows["chunk"] == expected_chunk
    assert rows["pid"] == expected_pid
    assert expected_doc.count(0) == 3  # the long document really was split
    assert stats["texts"] == len(DOCS) and stats["rows"] == len(expected_rows)
    assert stats["tokens"] == int(table.lengths.sum()) == sum(map(len, expected_rows))


def test_tokenize_queries(tmp_path, tok, prepared):
    prefix = tmp_path / "queries.dev"
    stats = tokenize_queries(prepared / "queries.dev.parquet", prefix, MODEL, max_len=8, progress=False)
    table = TokenTable.open(prefix)
    assert len(table) == len(QUERIES)
    for r, (_, text) in enumerate(QUERIES):
        assert table.row(r).tolist() == _ids(tok, text, truncation=True, max_length=8), r
    assert len(table.row(0)) == 8
    assert table.row(2).tolist() == [tok.cls_token_id, tok.sep_token_id]
    rows = pq.read_table(Path(f"{prefix}.rows.parquet")).to_pydict()
    assert rows == {"row": [0, 1, 2], "qid": [q for q, _ in QUERIES]}
    assert stats["texts"] == stats["rows"] == len(QUERIES)
    assert stats["max_row_len"] == 8


@pytest.mark.parametrize("chunks", [1, 3])
def test_small_batches_give_identical_output(tmp_path, prepared, chunks):
    small, large = tmp_path / "small" / "c", tmp_path / "large" / "c"
    small.parent.mkdir()
    large.parent.mkdir()
    s1 = tokenize_corpus(prepared / "collection.parquet", small, MODEL, max_len=16, chunks=chunks,
                         batch_size=2, progress=False)
    s2 = tokenize_corpus(prepared / "collection.parquet", large, MODEL, max_len=16, chunks=chunks,
                         batch_size=1000, progress=False)
    assert s1 == s2
    for a, b in zip(_outputs(small), _outputs(large)):
        if a.suffix == ".npy":
            assert a.read_bytes() == b.read_bytes(), a.name
        else:
            assert pq.read_table(a).equals(pq.read_table(b)), a.name
    assert TokenTable.open(small).lengths.size == s1["rows"]


def test_small_batches_queries_identical(tmp_path, prepared):
    a = tmp_path / "a"
    b = tmp_path / "b"
    tokenize_queries(prepared / "queries.dev.parquet", a, MODEL, max_len=8, batch_size=1, progress=False)
    tokenize_queries(prepared / "queries.dev.parquet", b, MODEL, max_len=8, batch_size=512, progress=False)
    for x, y in zip(_outputs(a), _outputs(b)):
        if x.suffix == ".npy":
            assert x.read_bytes() == y.read_bytes(), x.name
        else:
            assert pq.read_table(x).equals(pq.read_table(y)), x.name
