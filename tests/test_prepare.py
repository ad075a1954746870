"""Tests for anceflow.prepare: prepare_local (MS MARCO TSV layout) and prepare_beir.

Every bad-input case must raise an InputError naming the file and the line, and must
leave nothing behind in the output folder (no parquet, no stats.json, no staging folder).
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pandas as pd
import pytest

from anceflow.errors import InputError
from anceflow.prepare import document_text, prepare_beir, prepare_local, split_files

CRANFIELD = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "cranfield"


# --------------------------------------------------------------------------- helpers


def _write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def make_local(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        _write(root / name, content)
    return root


def good_local_files() -> dict[str, str]:
    """A valid two-split MS MARCO-style folder (2-field collection)."""
    return {
        "collection.tsv": "007\tthe first passage\n7\tseven is not 007\nD-3\tthird passage about wings\n42\tlast one\n",
        "queries.train.tsv": "0012\twhat is seven\n12\twings\n",
        "queries.dev.tsv": "900\tlast query\n",
        # tab separated, then space separated, with a blank line and a CRLF ending
        "qrels.train.tsv": "0012\t0\t7\t1\n\n12 0 D-3 2\r\n0012 0 007 0\n",
        "qrels.dev.tsv": "900\t0\t42\t1\n",
    }


def read_rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def assert_no_output(out: Path) -> None:
    """Nothing at all was left in ``out`` (it may or may not exist)."""
    if out.exists():
        leftovers = sorted(p.name for p in out.iterdir())
        assert leftovers == [], f"failed prepare left {leftovers} in {out}"


def snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def expect_input_error(fn, *args, path: Path, line: int | None, contains: str = ""):
    with pytest.raises(InputError) as info:
        fn(*args, progress=False)
    err = info.value
    assert err.path == str(path)
    assert err.line == line
    where = f"{path}:{line}" if line is not None else str(path)
    assert str(err).startswith(f"{where}: "), str(err)
    if contains:
        assert contains in str(err), str(err)
    return err


# --------------------------------------------------------------------------- small helpers


def test_document_text_and_split_files():
    assert document_text("body") == "body"
    assert document_text("body", "Title") == "Title body"
    assert document_text("body", "Title", "http://u") == "http://u Title body"
    assert document_text("", "", None) == ""
    assert split_files(["train", "dev"]) == [
        "queries.train.parquet", "qrels.train.parquet", "candidates.train.parquet",
        "queries.dev.parquet", "qrels.dev.parquet", "candidates.dev.parquet",
    ]


# --------------------------------------------------------------------------- prepare_local: valid


def test_local_valid_exact_contents(tmp_path):
    src = make_local(tmp_path / "src", good_local_files())
    out = tmp_path / "out"
    stats = prepare_local(src, out, ["train", "dev"], progress=False)

    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["collection.parquet", "stats.json"] + split_files(["train", "dev"])
    )

    coll = pq.read_table(out / "collection.parquet")
    assert coll.schema.names == ["pid", "text"]
    assert coll.schema.field("pid").type == pa.string()
    assert coll.to_pylist() == [
        {"pid": "007", "text": "the first passage"},
        {"pid": "7", "text": "seven is not 007"},
        {"pid": "D-3", "text": "third passage about wings"},
        {"pid": "42", "text": "last one"},
    ]

    assert read_rows(out / "queries.train.parquet") == [
        {"qid": "0012", "text": "what is seven"},
        {"qid": "12", "text": "wings"},
    ]
    assert read_rows(out / "queries.dev.parquet") == [{"qid": "900", "text": "last query"}]

    qrels = pq.read_table(out / "qrels.train.parquet")
    assert qrels.schema.field("rel").type == pa.int32()
    assert qrels.schema.field("qid").type == pa.string()
    assert qrels.to_pylist() == [
        {"qid": "0012", "pid": "7", "rel": 1},
        {"qid": "12", "pid": "D-3", "rel": 2},
        {"qid": "0012", "pid": "007", "rel": 0},
    ]
    assert read_rows(out / "qrels.dev.parquet") == [{"qid": "900", "pid": "42", "rel": 1}]

    # no candidates file in the source: an empty (but typed) candidates table
    cand = pq.read_table(out / "candidates.train.parquet")
    assert cand.num_rows == 0
    assert cand.schema.names == ["qid", "pid", "rank"]
    assert cand.schema.field("rank").type == pa.int32()

    on_disk = json.loads((out / "stats.json").read_text(encoding="utf-8"))
    assert on_disk == stats
    assert stats["collection"]["documents"] == 4
    assert stats["collection"]["empty_texts"] == 0
    assert stats["collection"]["columns"] == ["pid", "text"]
    train = stats["splits"]["train"]
    assert train["queries"] == 2
    assert train["judgments"] == 3
    assert train["positive_judgments"] == 2
    assert train["judged_queries"] == 2
    assert train["candidates"] == 0
    assert stats["splits"]["dev"]["queries"] == 1


def test_local_three_column_collection_keeps_title(tmp_path):
    files = good_local_files()
    files["collection.tsv"] = "007\tTitle A\tbody a\n7\t\tbody b\nD-3\tTitle C\t\n42\tT\tx\n"
    src = make_local(tmp_path / "src", files)
    out = tmp_path / "out"
    stats = prepare_local(src, out, ["train"], progress=False)
    coll = pq.read_table(out / "collection.parquet")
    assert coll.schema.names == ["pid", "text", "title"]
    assert coll.to_pylist() == [
        {"pid": "007", "text": "body a", "title": "Title A"},
        {"pid": "7", "text": "body b", "title": ""},
        {"pid": "D-3", "text": "", "title": "Title C"},
        {"pid": "42", "text": "x", "title": "T"},
    ]
    # D-3 has a title, so its document text is not empty
    assert stats["collection"]["empty_texts"] == 0
    assert stats["collection"]["columns"] == ["pid", "text", "title"]
    # only the requested split was written
    assert not (out / "queries.dev.parquet").exists()


def test_local_four_column_collection_keeps_url_and_title(tmp_path):
    files = good_local_files()
    files["collection.tsv"] = (
        "007\thttp://a\tTitle A\tbody a\n7\thttp://b\tTitle B\tbody b\n"
        "D-3\thttp://c\t\tbody c\n42\t\tT\tx\n"
    )
    src = make_local(tmp_path / "src", files)
    out = tmp_path / "out"
    prepare_local(src, out, ["train"], progress=False)
    coll = pq.read_table(out / "collection.parquet")
    assert coll.schema.names == ["pid", "text", "title", "url"]
    assert coll.to_pylist() == [
        {"pid": "007", "text": "body a", "title": "Title A", "url": "http://a"},
        {"pid": "7", "text": "body b", "title": "Title B", "url": "http://b"},
        {"pid": "D-3", "text": "body c", "title": "", "url": "http://c"},
        {"pid": "42", "text": "x", "title": "T", "url": ""},
    ]


def test_local_candidates_ranked_per_query(tmp_path):
    files = good_local_files()
    files["candidates.train.tsv"] = "0012\t42\n12 D-3\n0012\t007\n0012 7\n12\t42\n"
    src = make_local(tmp_path / "src", files)
    out = tmp_path / "out"
    stats = prepare_local(src, out, ["train", "dev"], progress=False)
    assert read_rows(out / "candidates.train.parquet") == [
        {"qid": "0012", "pid": "42", "rank": 1},
        {"qid": "12", "pid": "D-3", "rank": 1},
        {"qid": "0012", "pid": "007", "rank": 2},
        {"qid": "0012", "pid": "7", "rank": 3},
        {"qid": "12", "pid": "42", "rank": 2},
    ]
    assert stats["splits"]["train"]["candidates"] == 5
    assert stats["splits"]["dev"]["candidates"] == 0
    assert pq.read_table(out / "candidates.dev.parquet").num_rows == 0


def test_local_empty_texts_are_counted_not_fatal(tmp_path):
    files = good_local_files()
    files["collection.tsv"] = "007\tfine\n7\t\nD-3\t   \n42\tok\n"
    src = make_local(tmp_path / "src", files)
    out = tmp_path / "out"
    stats = prepare_local(src, out, ["train"], progress=False)
    assert stats["collection"]["documents"] == 4
    assert stats["collection"]["empty_texts"] == 2
    assert stats["collection"]["empty_text_pids"] == ["7", "D-3"]
    # the empty documents are kept, in place
    assert [r["pid"] for r in read_rows(out / "collection.parquet")] == ["007", "7", "D-3", "42"]


def test_local_empty_query_text_counted(tmp_path):
    files = good_local_files()
    files["queries.train.tsv"] = "0012\t\n12\twings\n"
    src = make_local(tmp_path / "src", files)
    stats = prepare_local(src, tmp_path / "out", ["train"], progress=False)
    assert stats["splits"]["train"]["empty_texts"] == 1
    assert stats["splits"]["train"]["empty_text_qids"] == ["0012"]


def test_local_duplicate_split_names_prepared_once(tmp_path):
    src = make_local(tmp_path / "src", good_local_files())
    stats = prepare_local(src, tmp_path / "out", ["dev", "dev"], progress=False)
    assert list(stats["splits"]) == ["dev"]


def test_local_successful_reprepare_replaces_output(tmp_path):
    files = good_local_files()
    src = make_local(tmp_path / "src", files)
    out = tmp_path / "out"
    prepare_local(src, out, ["train"], progress=False)
    _write(src / "collection.tsv", files["collection.tsv"] + "43\tnew doc\n")
    stats = prepare_local(src, out, ["train"], progress=False)
    assert stats["collection"]["documents"] == 5
    assert [r["pid"] for r in read_rows(out / "collection.parquet")][-1] == "43"
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------- prepare_local: bad input

# (file to replace, its bad content, file named in the error, line, text the message contains)
BAD_LOCAL = {
    "collection_wrong_field_count": (
        "collection.tsv", "007\ta\n7\tb\textra\n", "collection.tsv", 2, "expected 2 tab-separated fields"),
    "collection_first_line_too_many_fields": (
        "collection.tsv", "1\ta\tb\tc\td\n", "collection.tsv", 1, "found 5"),
    "collection_wrong_field_count_after_blank_line": (
        "collection.tsv", "007\ta\n\n\n7\tb\tc\n", "collection.tsv", 4, "found 3"),
    "collection_empty_pid": (
        "collection.tsv", "007\ta\n \tb\n", "collection.tsv", 2, "empty pid"),
    "duplicate_pid": (
        "collection.tsv", "007\ta\n7\tb\nD-3\tc\n42\td\n007\tagain\n", "collection.tsv", 5, "duplicate pid '007'"),
    "collection_not_utf8": (
        "collection.tsv", b"007\tok\n7\tgood\n\nD-3\tab\xffcd\n42\tx\n", "collection.tsv", 4, "0xff"),
    "queries_wrong_field_count": (
        "queries.train.tsv", "0012\tok\n12\twings\tmore\n", "queries.train.tsv", 2, "expected 2 tab-separated"),
    "queries_one_field": (
        "queries.train.tsv", "0012\tok\n12\n", "queries.train.tsv", 2, "found 1"),
    "duplicate_qid": (
        "queries.train.tsv", "0012\ta\n12\tb\n0012\tc\n", "queries.train.tsv", 3, "first defined on line 1"),
    "queries_not_utf8": (
        "queries.train.tsv", b"0012\ta\n12\tw\xffings\n", "queries.train.tsv", 2, "not valid UTF-8"),
    "qrels_wrong_field_count": (
        "qrels.train.tsv", "0012 0 7 1\n12 0 D-3\n", "qrels.train.tsv", 2, "expected 4 fields"),
    "qrels_non_integer_rel": (
        "qrels.train.tsv", "0012 0 7 1\n\n12\t0\tD-3\thigh\n", "qrels.train.tsv", 3, "'high'"),
    "qrels_float_rel": (
        "qrels.train.tsv", "0012 0 7 1.5\n", "qrels.train.tsv", 1, "integer"),
    "qrels_unknown_qid": (
        "qrels.train.tsv", "0012 0 7 1\n12 0 D-3 1\n999 0 7 1\n", "qrels.train.tsv", 3, "qid '999'"),
    "qrels_unknown_qid_id_not_normalized": (
        "qrels.train.tsv", "0012 0 7 1\n012 0 7 1\n", "qrels.train.tsv", 2, "qid '012'"),
    "qrels_unknown_pid": (
        "qrels.train.tsv", "0012 0 7 1\n12 0 0007 1\n", "qrels.train.tsv", 2, "pid '0007'"),
    "qrels_duplicate_judgment": (
        "qrels.train.tsv", "0012 0 7 1\n0012 0 7 2\n", "qrels.train.tsv", 2, "first on line 1"),
    "qrels_not_utf8": (
        "qrels.train.tsv", b"0012 0 7 1\n12 0 D\xfe3 1\n", "qrels.train.tsv", 2, "0xfe"),
    "later_split_qrels_unknown_pid": (
        "qrels.dev.tsv", "900\t0\t42\t1\n900\t0\tnope\t1\n", "qrels.dev.tsv", 2, "pid 'nope'"),
    "candidates_unknown_pid": (
        "candidates.train.tsv", "0012 7\n12 nope\n", "candidates.train.tsv", 2, "pid 'nope'"),
    "candidates_unknown_qid": (
        "candidates.train.tsv", "0012 7\n\n77 7\n", "candidates.train.tsv", 3, "qid '77'"),
    "candidates_wrong_field_count": (
        "candidates.train.tsv", "0012 7 3\n", "candidates.train.tsv", 1, "expected 2 fields"),
}


@pytest.mark.parametrize("case", sorted(BAD_LOCAL))
def test_local_bad_input_names_file_and_line_and_leaves_nothing(tmp_path, case):
    name, content, named, line, contains = BAD_LOCAL[case]
    files = good_local_files()
    files[name] = content
    src = make_local(tmp_path / "src", files)
    out = tmp_path / "out"
    expect_input_error(prepare_local, src, out, ["train", "dev"],
                       path=src / named, line=line, contains=contains)
    assert_no_output(out)


def test_local_not_utf8_reports_column(tmp_path):
    files = good_local_files()
    files["collection.tsv"] = b"007\tok\n7\tgood\n\nD-3\tab\xffcd\n"
    src = make_local(tmp_path / "src", files)
    err = expect_input_error(prepare_local, src, tmp_path / "out", ["train"],
                             path=src / "collection.tsv", line=4)
    # "D-3\tab" is 6 bytes, so the bad byte is column 7
    assert "column 7" in str(err)


@pytest.mark.parametrize("missing", ["collection.tsv", "queries.dev.tsv", "qrels.dev.tsv"])
def test_local_missing_file(tmp_path, missing):
    files = good_local_files()
    del files[missing]
    src = make_local(tmp_path / "src", files)
    out = tmp_path / "out"
    err = expect_input_error(prepare_local, src, out, ["train", "dev"], path=src / missing, line=None)
    assert "missing" in str(err)
    if missing != "collection.tsv":
        assert "has no qrels for split 'dev'; its splits are 'train'" in str(err)
    assert_no_output(out)


def test_local_missing_source_folder(tmp_path):
    out = tmp_path / "out"
    expect_input_error(prepare_local, tmp_path / "nope", out, ["train"],
                       path=tmp_path / "nope" / "collection.tsv", line=None)
    assert_no_output(out)


def test_local_empty_collection(tmp_path):
    files = good_local_files()
    files["collection.tsv"] = "\n\n"
    src = make_local(tmp_path / "src", files)
    out = tmp_path / "out"
    err = expect_input_error(prepare_local, src, out, ["train"], path=src / "collection.tsv", line=None)
    assert "empty" in str(err)
    assert_no_output(out)


def test_failed_reprepare_keeps_earlier_good_output(tmp_path):
    files = good_local_files()
    src = make_local(tmp_path / "src", files)
    out = tmp_path / "out"
    prepare_local(src, out, ["train", "dev"], progress=False)
    before = snapshot(out)
    assert "collection.parquet" in before and "stats.json" in before

    # break a later split so the collection and train split have already been staged
    _write(src / "qrels.dev.tsv", "900\t0\t42\t1\n900\t0\tmissing-pid\t1\n")
    _write(src / "collection.tsv", files["collection.tsv"] + "43\tnew doc\n")
    expect_input_error(prepare_local, src, out, ["train", "dev"], path=src / "qrels.dev.tsv", line=2)
    assert snapshot(out) == before


# --------------------------------------------------------------------------- prepare_beir


def make_beir(root: Path, *, corpus=None, queries=None, qrels=None) -> Path:
    corpus = corpus if corpus is not None else [
        {"_id": "007", "title": "Title A", "text": "body a"},
        {"_id": 12, "title": "", "text": "numeric id"},
        {"_id": "doc-x", "text": "no title key"},
        {"_id": "e", "title": None, "text": None},
    ]
    queries = queries if queries is not None else [
        {"_id": "q3", "text": "third"},
        {"_id": "001", "text": "first"},
        {"_id": "q2", "text": "second", "metadata": {}},
        {"_id": "unjudged", "text": "never in qrels"},
    ]
    qrels = qrels if qrels is not None else {
        "test": "query-id\tcorpus-id\tscore\n001\t007\t1\nq3\t12\t2\nq3\tdoc-x\t0\n",
        "dev": "query-id\tcorpus-id\tscore\nq2\te\t1\n",
    }
    for name, records in (("corpus.jsonl", corpus), ("queries.jsonl", queries)):
        if isinstance(records, (str, bytes)):
            _write(root / name, records)
        else:
            _write(root / name, "".join(json.dumps(r) + "\n" for r in records))
    for split, text in qrels.items():
        _write(root / "qrels" / f"{split}.tsv", text)
    return root


def test_beir_valid_exact_contents(tmp_path):
    src = make_beir(tmp_path / "beir")
    out = tmp_path / "out"
    stats = prepare_beir(src, out, ["test", "dev"], progress=False)

    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["collection.parquet", "stats.json"] + split_files(["test", "dev"])
    )
    coll = pq.read_table(out / "collection.parquet")
    assert coll.schema.names == ["pid", "text", "title"]
    assert coll.to_pylist() == [
        {"pid": "007", "text": "body a", "title": "Title A"},
        {"pid": "12", "text": "numeric id", "title": ""},
        {"pid": "doc-x", "text": "no title key", "title": ""},
        {"pid": "e", "text": "", "title": ""},
    ]
    assert stats["collection"]["empty_texts"] == 1
    assert stats["collection"]["empty_text_pids"] == ["e"]

    # a split's queries are those its qrels judge, in queries.jsonl order
    assert read_rows(out / "queries.test.parquet") == [
        {"qid": "q3", "text": "third"},
        {"qid": "001", "text": "first"},
    ]
    assert read_rows(out / "queries.dev.parquet") == [{"qid": "q2", "text": "second"}]
    qrels = pq.read_table(out / "qrels.test.parquet")
    assert qrels.schema.field("rel").type == pa.int32()
    assert qrels.to_pylist() == [
        {"qid": "001", "pid": "007", "rel": 1},
        {"qid": "q3", "pid": "12", "rel": 2},
        {"qid": "q3", "pid": "doc-x", "rel": 0},
    ]
    assert pq.read_table(out / "candidates.test.parquet").num_rows == 0
    assert stats["splits"]["test"]["queries"] == 2
    assert stats["splits"]["test"]["judgments"] == 3
    assert stats["splits"]["test"]["positive_judgments"] == 2
    assert stats["splits"]["dev"]["judged_queries"] == 1
    assert json.loads((out / "stats.json").read_text(encoding="utf-8")) == stats


def test_beir_missing_split_lists_the_splits_it_has(tmp_path):
    """BEIR names its evaluation split 'test': asking for 'dev' of a dataset without one says which
    splits exist and which keys choose them."""
    src = make_beir(tmp_path / "beir", qrels={"train": "q2\te\t1\n", "test": "001\t007\t1\n"})
    out = tmp_path / "out"
    err = expect_input_error(prepare_beir, src, out, ["train", "dev"], path=src / "qrels" / "dev.tsv", line=None)
    assert ("missing: this BEIR folder has no qrels for split 'dev'; its splits are 'test', 'train' (BEIR calls its "
            "evaluation split 'test'). Choose among them with dataset.train_split and dataset.eval_splits "
            "(e.g. dataset: {train_split: train, eval_splits: [test]})") in str(err)
    assert_no_output(out)


def test_beir_qrels_without_header(tmp_path):
    src = make_beir(tmp_path / "beir", qrels={"test": "001\t007\t1\n"})
    out = tmp_path / "out"
    prepare_beir(src, out, ["test"], progress=False)
    assert read_rows(out / "qrels.test.parquet") == [{"qid": "001", "pid": "007", "rel": 1}]


BAD_BEIR = {
    "corpus_invalid_json": (
        dict(corpus='{"_id": "a", "text": "x"}\n{"_id": "b", "text": \n'), "corpus.jsonl", 2, "invalid JSON"),
    "corpus_missing_id": (
        dict(corpus='{"_id": "a", "text": "x"}\n\n{"text": "no id"}\n'), "corpus.jsonl", 3, "'_id'"),
    "corpus_duplicate_pid": (
        dict(corpus='{"_id": "007", "text": "x"}\n{"_id": "007", "text": "y"}\n'),
        "corpus.jsonl", 2, "duplicate pid '007'"),
    "corpus_not_utf8": (
        dict(corpus=b'{"_id": "007", "text": "x"}\n{"_id": "8", "text": "\xff"}\n'), "corpus.jsonl", 2, "0xff"),
    "queries_not_an_object": (
        dict(queries='{"_id": "001", "text": "x"}\n[1, 2]\n'), "queries.jsonl", 2, "'_id'"),
    "queries_duplicate_judged_qid": (
        dict(queries='{"_id": "001", "text": "x"}\n{"_id": "q3", "text": "y"}\n{"_id": "001", "text": "z"}\n',
             qrels={"test": "query-id\tcorpus-id\tscore\n001\t007\t1\n"}),
        "queries.jsonl", 3, "duplicate qid '001'"),
    "qrels_wrong_field_count": (
        dict(qrels={"test": "query-id\tcorpus-id\tscore\n001\t007\t1\nq3\t12\n"}), "qrels/test.tsv", 3, "found 2"),
    "qrels_non_integer_score": (
        dict(qrels={"test": "query-id\tcorpus-id\tscore\n001\t007\tyes\n"}), "qrels/test.tsv", 2, "'yes'"),
    "qrels_unknown_pid": (
        dict(qrels={"test": "query-id\tcorpus-id\tscore\n001\t007\t1\nq3\tnope\t1\n"}),
        "qrels/test.tsv", 3, "pid 'nope'"),
}


@pytest.mark.parametrize("case", sorted(BAD_BEIR))
def test_beir_bad_input_names_file_and_line_and_leaves_nothing(tmp_path, case):
    kwargs, named, line, contains = BAD_BEIR[case]
    src = make_beir(tmp_path / "beir", **kwargs)
    out = tmp_path / "out"
    expect_input_error(prepare_beir, src, out, ["test"], path=src / named, line=line, contains=contains)
    assert_no_output(out)


def test_beir_qrels_unknown_qid(tmp_path):
    src = make_beir(tmp_path / "beir", qrels={"test": "query-id\tcorpus-id\tscore\n001\t007\t1\nghost\t12\t1\n"})
    out = tmp_path / "out"
    with pytest.raises(InputError) as info:
        prepare_beir(src, out, ["test"], progress=False)
    assert info.value.path == str(src / "qrels" / "test.tsv")
    assert info.value.line == 3
    assert "'ghost'" in str(info.value)
    assert str(info.value).startswith(f"{src / 'qrels' / 'test.tsv'}:3: ")
    assert_no_output(out)


def test_byte_order_mark_is_not_part_of_the_first_id(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "collection.tsv").write_bytes(b"\xef\xbb\xbf1\tfirst\n2\tsecond\n")
    (src / "queries.dev.tsv").write_bytes(b"\xef\xbb\xbfq1\tquery\n")
    (src / "qrels.dev.tsv").write_text("q1 0 1 1\n")
    prepare_local(src, tmp_path / "out", ["dev"], progress=False)
    assert pd.read_parquet(tmp_path / "out" / "queries.dev.parquet")["qid"].tolist() == ["q1"]
    assert pd.read_parquet(tmp_path / "out" / "collection.parquet")["pid"].tolist() == ["1", "2"]


def test_a_document_with_only_a_url_is_not_empty(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "collection.tsv").write_text("D1\thttp://a.example/x\t\t\nD2\t\t\t\n")
    (src / "queries.dev.tsv").write_text("q1\tquery\n")
    (src / "qrels.dev.tsv").write_text("q1 0 D1 1\n")
    stats = prepare_local(src, tmp_path / "out", ["dev"], progress=False)
    assert stats["collection"]["empty_text_pids"] == ["D2"]


@pytest.mark.parametrize("missing", ["corpus.jsonl", "queries.jsonl", "qrels/dev.tsv"])
def test_beir_missing_file(tmp_path, missing):
    src = make_beir(tmp_path / "beir")
    (src / missing).unlink()
    out = tmp_path / "out"
    err = expect_input_error(prepare_beir, src, out, ["test", "dev"], path=src / missing, line=None)
    assert "missing" in str(err)
    assert_no_output(out)


def test_beir_failed_reprepare_keeps_earlier_good_output(tmp_path):
    src = make_beir(tmp_path / "beir")
    out = tmp_path / "out"
    prepare_beir(src, out, ["test", "dev"], progress=False)
    before = snapshot(out)
    _write(src / "qrels" / "dev.tsv", "query-id\tcorpus-id\tscore\nq2\tnope\t1\n")
    expect_input_error(prepare_beir, src, out, ["test", "dev"], path=src / "qrels" / "dev.tsv", line=2)
    assert snapshot(out) == before


# --------------------------------------------------------------------------- real data: Cranfield


@pytest.mark.skipif(not (CRANFIELD / "collection.tsv").exists(),
                    reason=f"Cranfield test collection not found at {CRANFIELD}")
def test_cranfield(tmp_path):
    out = tmp_path / "cran"
    stats = prepare_local(CRANFIELD, out, ["train", "dev"], progress=False)

    assert stats["collection"]["documents"] == 1400
    assert stats["collection"]["empty_texts"] == 2
    assert stats["collection"]["empty_text_pids"] == ["471", "995"]
    assert stats["splits"]["train"]["queries"] == 113
    assert stats["splits"]["dev"]["queries"] == 112

    coll = pq.read_table(out / "collection.parquet")
    assert coll.num_rows == 1400
    pids = coll.column("pid").to_pylist()
    # row order is the file's order
    expected = [line.split("\t", 1)[0] for line in
                (CRANFIELD / "collection.tsv").read_text(encoding="utf-8").splitlines() if line.strip()]
    assert pids == expected
    texts = dict(zip(pids, coll.column("text").to_pylist()))
    assert texts["471"].strip() == "" and texts["995"].strip() == ""
    assert pq.read_table(out / "queries.train.parquet").num_rows == 113
    assert pq.read_table(out / "queries.dev.parquet").num_rows == 112
    for split in ("train", "dev"):
        qrels = pq.read_table(out / f"qrels.{split}.parquet")
        assert qrels.num_rows == stats["splits"][split]["judgments"] > 0
        qids = set(pq.read_table(out / f"queries.{split}.parquet").column("qid").to_pylist())
        assert set(qrels.column("qid").to_pylist()) <= qids
    # train and dev queries are disjoint
    train_q = set(pq.read_table(out / "queries.train.parquet").column("qid").to_pylist())
    dev_q = set(pq.read_table(out / "queries.dev.parquet").column("qid").to_pylist())
    assert not train_q & dev_q


@pytest.mark.parametrize("keep_unjudged", [False, True])
def test_training_split_keeps_judged_queries_only_by_default(tmp_path, keep_unjudged):
    """Unjudged training queries (and those judged 0 only) are dropped unless dataset.keep_unjudged;
    stats.json counts both; evaluation splits are never filtered."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "collection.tsv").write_text("d1\tone\nd2\ttwo\nd3\tthree\n")
    (src / "queries.train.tsv").write_text("q1\ta\nq2\tb\nq3\tc\nq4\td\n")
    (src / "qrels.train.tsv").write_text("q1 0 d1 1\nq3 0 d2 0\n")  # q2, q4 unjudged; q3 judged 0 only
    (src / "candidates.train.tsv").write_text("q1\td2\nq2\td1\n")
    (src / "queries.dev.tsv").write_text("q7\tx\nq8\ty\n")
    (src / "qrels.dev.tsv").write_text("q7 0 d3 1\n")
    stats = prepare_local(src, tmp_path / "out", ["train", "dev"], train_split="train", keep_unjudged=keep_unjudged,
                          progress=False)
    train = pd.read_parquet(tmp_path / "out/queries.train.parquet")["qid"].tolist()
    expected = ["q1", "q2", "q3", "q4"] if keep_unjudged else ["q1"]
    assert train == expected
    assert pd.read_parquet(tmp_path / "out/qrels.train.parquet")["qid"].tolist() == (["q1", "q3"] if keep_unjudged
                                                                                     else ["q1"])
    assert pd.read_parquet(tmp_path / "out/candidates.train.parquet")["qid"].tolist() == (["q1", "q2"] if keep_unjudged
                                                                                          else ["q1"])
    assert pd.read_parquet(tmp_path / "out/queries.dev.parquet")["qid"].tolist() == ["q7", "q8"]
    split = stats["splits"]["train"]
    assert (split["queries"], split["queries_in_source"], split["unjudged_dropped"]) == \
        ((4, 4, 0) if keep_unjudged else (1, 4, 3))
    assert json.loads((tmp_path / "out/stats.json").read_text())["splits"]["train"]["queries_in_source"] == 4


def test_beir_training_split_drops_queries_judged_zero(tmp_path):
    src = tmp_path / "beir"
    (src / "qrels").mkdir(parents=True)
    (src / "corpus.jsonl").write_text('{"_id": "d1", "text": "one"}\n{"_id": "d2", "text": "two"}\n')
    (src / "queries.jsonl").write_text('{"_id": "q1", "text": "a"}\n{"_id": "q2", "text": "b"}\n')
    (src / "qrels/train.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t0\n")
    stats = prepare_beir(src, tmp_path / "out", ["train"], train_split="train", progress=False)
    assert pd.read_parquet(tmp_path / "out/queries.train.parquet")["qid"].tolist() == ["q1"]
    assert stats["splits"]["train"]["unjudged_dropped"] == 1


def _small(src: Path, **files) -> Path:
    src.mkdir(parents=True, exist_ok=True)
    base = {"collection.tsv": "d1\tone\nd2\ttwo\n", "queries.train.tsv": "q1\ta\n", "qrels.train.tsv": "q1 0 d1 1\n",
            "queries.dev.tsv": "q7\tb\n", "qrels.dev.tsv": "q7 0 d2 1\n"}
    for name, text in {**base, **files}.items():
        (src / name).write_text(text)
    return src


@pytest.mark.parametrize("files, message", [
    ({"qrels.dev.tsv": ""}, "evaluation split 'dev' has no judgment above 0"),
    ({"qrels.dev.tsv": "q7 0 d2 0\n"}, "evaluation split 'dev' has no judgment above 0"),
    ({"qrels.train.tsv": "q1 0 d1 0\n"}, "training split 'train' has no query with a judgment above 0"),
    ({"collection.tsv": "d1\tone\nd 2\ttwo\n"}, "collection.tsv:2: pid 'd 2' contains whitespace"),
    ({"queries.dev.tsv": "q 7\tb\n"}, "queries.dev.tsv:1: qid 'q 7' contains whitespace"),
    ({"queries.dev.tsv": "q1\ta\n", "qrels.dev.tsv": "q1 0 d2 1\n"},
     "qid 'q1' is in the training split 'train' and in the evaluation split 'dev'"),
])
def test_bad_splits_and_ids_stop_prepare_and_leave_nothing(tmp_path, files, message):
    src = _small(tmp_path / "src", **files)
    with pytest.raises(InputError, match=message):
        prepare_local(src, tmp_path / "out", ["train", "dev"], train_split="train", progress=False)
    assert not list((tmp_path / "out").glob("*.parquet"))


def test_same_query_text_in_training_and_evaluation_is_counted(tmp_path):
    src = _small(tmp_path / "src", **{"queries.train.tsv": "q1\tWhat is  ANCE\nq2\tother\n",
                                      "qrels.train.tsv": "q1 0 d1 1\nq2 0 d2 1\n",
                                      "queries.dev.tsv": "q7\twhat is ance\n"})
    stats = prepare_local(src, tmp_path / "out", ["train", "dev"], train_split="train", progress=False)
    assert stats["splits"]["dev"]["same_text_as_training"] == 1
    assert json.loads((tmp_path / "out/stats.json").read_text())["splits"]["dev"]["same_text_as_training"] == 1


def test_beir_ids_with_whitespace_are_rejected(tmp_path):
    src = tmp_path / "beir"
    (src / "qrels").mkdir(parents=True)
    (src / "corpus.jsonl").write_text('{"_id": "d 1", "text": "one"}\n')
    (src / "queries.jsonl").write_text('{"_id": "q1", "text": "a"}\n')
    (src / "qrels/dev.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td 1\t1\n")
    with pytest.raises(InputError, match=r"corpus.jsonl:1: _id 'd 1' contains whitespace"):
        prepare_beir(src, tmp_path / "out", ["dev"], progress=False)
