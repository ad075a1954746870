"""Prepare: normalize any dataset source into one validated, columnar form.

Output folder (all parquet, ids kept verbatim as strings):
  collection.parquet          pid, text [, title] [, url]   row i = dense row number i
  queries.<split>.parquet     qid, text
  qrels.<split>.parquet       qid, pid, rel
  candidates.<split>.parquet  qid, pid, rank   (a reranking list; empty if the source has none)
  stats.json                  counts, empty texts, layout

Ids stay exactly as the source spells them (MS MARCO's integers, BEIR's strings) and
the row order of collection.parquet is the one dense numbering every later stage uses
(token rows, embedding rows, index ids). Everything is written to a staging folder and
moved into place only when the whole dataset has validated, so bad input leaves no
partial output behind.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from anceflow.splits import beir_folder_splits, beir_split_message, local_folder_splits, split_message
from anceflow.errors import InputError
from anceflow.io import staging_dir
from anceflow.prepare import readers

log = logging.getLogger(__name__)

BATCH_ROWS = 100_000
OUTPUT_FILES = ("collection.parquet", "stats.json")


def split_files(splits: Iterable[str]) -> list[str]:
    """The per-split files prepare writes, for declaring Snakemake outputs."""
    return [f"{kind}.{split}.parquet" for split in splits for kind in ("queries", "qrels", "candidates")]


def document_text(text: str, title: str | None = None, url: str | None = None, separator: str = " ") -> str:
    """The text a model or BM25 sees for a document: [url] [title] body joined by ``separator``
    (a space, as BEIR; the ANCE reference puts the tokenizer's separator token between them)."""
    return separator.join(part for part in (url, title, text) if part)


def iter_documents(collection: str | Path, batch_size: int, separator: str = " ") -> Iterator[tuple[list[str], list[str]]]:
    """(pids, texts) batches of a prepared ``collection.parquet``, texts as ``document_text`` makes them."""
    pf = pq.ParquetFile(collection)
    columns = [c for c in ("pid", "url", "title", "text") if c in pf.schema_arrow.names]
    for batch in pf.iter_batches(batch_size=batch_size, columns=columns):
        data = batch.to_pydict()
        none = [None] * batch.num_rows
        yield data["pid"], [document_text(*parts, separator=separator)
                            for parts in zip(data["text"], data.get("title", none), data.get("url", none))]


class _BatchWriter:
    """Writes records to parquet one row group at a time, so memory stays flat."""

    def __init__(self, path: Path, columns: list[str], types: dict[str, pa.DataType] | None = None):
        types = types or {}
        self.columns = columns
        self.schema = pa.schema([(c, types.get(c, pa.string())) for c in columns])
        self.writer = pq.ParquetWriter(path, self.schema)
        self.buffer: list[dict] = []
        self.rows = 0

    def add(self, record: dict) -> None:
        self.buffer.append(record)
        if len(self.buffer) >= BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        if self.buffer:
            table = pa.Table.from_pydict(
                {c: [r[c] for r in self.buffer] for c in self.columns}, schema=self.schema
            )
            self.writer.write_table(table)
            self.rows += len(self.buffer)
            self.buffer.clear()

    def close(self) -> int:
        self.flush()
        self.writer.close()
        return self.rows


def _write_collection(records: Iterator[dict], path: Path, source: str | Path, progress: bool) -> tuple[set, dict]:
    pids: set[str] = set()
    empty: list[str] = []
    writer = None
    for rec in tqdm(records, desc="collection", unit=" docs", disable=not progress, mininterval=2):
        if writer is None:
            columns = ["pid", "text"] + [c for c in ("title", "url") if c in rec]
            writer = _BatchWriter(path, columns)
        if rec["pid"] in pids:
            raise InputError(source, f"duplicate pid {rec['pid']!r} (already defined on an earlier line)", rec["line"])
        pids.add(rec["pid"])
        if not document_text(rec["text"], rec.get("title"), rec.get("url")).strip():
            empty.append(rec["pid"])
        writer.add(rec)
    if writer is None:
        raise InputError(source, "the collection is empty")
    writer.close()
    return pids, {"documents": len(pids), "empty_texts": len(empty), "empty_text_pids": empty[:50],
                  "columns": writer.columns}


def _write_queries(records: Iterator[dict], path: Path, source: str | Path, keep: set | None = None) -> tuple[set, set, dict]:
    """Write the queries whose qid is in ``keep`` (all if None); returns (kept qids, all qids, stats)."""
    seen: dict[str, int] = {}
    kept: set[str] = set()
    empty = []
    writer = _BatchWriter(path, ["qid", "text"])
    for rec in records:
        if rec["qid"] in seen:
            raise InputError(source, f"duplicate qid {rec['qid']!r} (first defined on line {seen[rec['qid']]})", rec["line"])
        seen[rec["qid"]] = rec["line"]
        if keep is not None and rec["qid"] not in keep:
            continue
        kept.add(rec["qid"])
        if not rec["text"].strip():
            empty.append(rec["qid"])
        writer.add(rec)
    writer.close()
    return kept, set(seen), {"queries": len(kept), "empty_texts": len(empty), "empty_text_qids": empty[:50]}


def _write_qrels(records: Iterator[dict], path: Path, source: str | Path, qids: set, pids: set,
                 kept: set | None = None) -> dict:
    """Validate every judgment against the split's queries and the collection; write those of
    ``kept`` queries (all if None)."""
    seen: dict[tuple[str, str], int] = {}
    positives = 0
    writer = _BatchWriter(path, ["qid", "pid", "rel"], {"rel": pa.int32()})
    for rec in records:
        if rec["qid"] not in qids:
            raise InputError(source, f"qrels name qid {rec['qid']!r}, which is not in the queries of this split", rec["line"])
        if rec["pid"] not in pids:
            raise InputError(source, f"qrels name pid {rec['pid']!r}, which is not in the collection", rec["line"])
        key = (rec["qid"], rec["pid"])
        if key in seen:
            raise InputError(source, f"duplicate judgment for qid {key[0]!r}, pid {key[1]!r} (first on line {seen[key]})", rec["line"])
        seen[key] = rec["line"]
        if kept is not None and rec["qid"] not in kept:
            continue
        positives += rec["rel"] > 0
        writer.add(rec)
    writer.close()
    judged = {q for q, _ in seen if kept is None or q in kept}
    return {"judgments": writer.rows, "positive_judgments": positives, "judged_queries": len(judged)}


def _positive_qids(records: Iterator[dict]) -> set:
    """Queries with at least one judgment above 0: the training queries that can be trained on."""
    return {rec["qid"] for rec in records if rec["rel"] > 0}


def _judged_stats(qstats: dict, all_qids: set, kept: set) -> dict:
    qstats["queries_in_source"] = len(all_qids)
    qstats["unjudged_dropped"] = len(all_qids) - len(kept)
    return qstats


def _write_candidates(records: Iterator[dict], path: Path, source: str | Path, qids: set, pids: set,
                      kept: set | None = None) -> int:
    writer = _BatchWriter(path, ["qid", "pid", "rank"], {"rank": pa.int32()})
    rank: dict[str, int] = {}
    for rec in records:
        if rec["qid"] not in qids:
            raise InputError(source, f"candidate list names qid {rec['qid']!r}, which is not in the queries of this split", rec["line"])
        if rec["pid"] not in pids:
            raise InputError(source, f"candidate list names pid {rec['pid']!r}, which is not in the collection", rec["line"])
        if kept is not None and rec["qid"] not in kept:
            continue
        rank[rec["qid"]] = rank.get(rec["qid"], 0) + 1
        writer.add({"qid": rec["qid"], "pid": rec["pid"], "rank": rank[rec["qid"]]})
    return writer.close()


def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise InputError(path, f"missing {what}")
    return path


def prepare_local(src: str | Path, out_dir: str | Path, splits: Iterable[str], *, train_split: str | None = None,
                  keep_unjudged: bool = False, progress: bool = True) -> dict:
    """Prepare a folder in MS MARCO TSV layout (see README: dataset.source = local).

    The training split keeps only queries with a positive judgment unless ``keep_unjudged``
    (MS MARCO's queries.train.tsv has 808,731 queries, 502,939 of them judged).
    """
    src = Path(src)
    splits = list(dict.fromkeys(splits))
    with staging_dir(out_dir) as stage:
        coll = _require(src / "collection.tsv", "collection.tsv")
        pids, stats = _write_collection(readers.read_collection_tsv(coll), stage / "collection.parquet", coll, progress)
        stats = {"source": str(src), "collection": stats, "splits": {}}
        for split in splits:
            qfile, rfile = src / f"queries.{split}.tsv", src / f"qrels.{split}.tsv"
            for file in (qfile, rfile):
                if not file.exists():
                    raise InputError(file, "missing: " + split_message("this folder", split, local_folder_splits(src)))
            keep = _positive_qids(readers.read_qrels_tsv(rfile)) if split == train_split and not keep_unjudged else None
            kept, qids, qstats = _write_queries(readers.read_queries_tsv(qfile), stage / f"queries.{split}.parquet",
                                                qfile, keep)
            qstats.update(_write_qrels(readers.read_qrels_tsv(rfile), stage / f"qrels.{split}.parquet", rfile, qids,
                                       pids, None if keep is None else kept))
            cfile = src / f"candidates.{split}.tsv"
            records = readers.read_candidates_tsv(cfile) if cfile.exists() else iter(())
            qstats["candidates"] = _write_candidates(records, stage / f"candidates.{split}.parquet", cfile, qids, pids,
                                                     None if keep is None else kept)
            stats["splits"][split] = _judged_stats(qstats, qids, kept)
        _check_splits(stats, train_split, src)
        _check_overlap(stage, splits, train_split, stats, src)
        _finish(stage, stats)
    return stats


def prepare_beir(src: str | Path, out_dir: str | Path, splits: Iterable[str], *, train_split: str | None = None,
                 keep_unjudged: bool = False, progress: bool = True) -> dict:
    """Prepare a BEIR folder: corpus.jsonl, queries.jsonl, qrels/<split>.tsv.

    BEIR keeps every split's queries in one file; a split's queries are those its qrels judge
    (for the training split, unless ``keep_unjudged``, those judged above 0).
    """
    src = Path(src)
    splits = list(dict.fromkeys(splits))
    with staging_dir(out_dir) as stage:
        corpus = _require(src / "corpus.jsonl", "corpus.jsonl")
        pids, cstats = _write_collection(readers.read_beir_corpus(corpus), stage / "collection.parquet", corpus, progress)
        stats = {"source": str(src), "collection": cstats, "splits": {}}
        qfile = _require(src / "queries.jsonl", "queries.jsonl")
        all_qids = {rec["qid"] for rec in readers.read_beir_queries(qfile)}
        for split in splits:
            rfile = src / "qrels" / f"{split}.tsv"
            if not rfile.exists():
                raise InputError(rfile, "missing: " + beir_split_message("this BEIR folder", split, beir_folder_splits(src)))
            judged = set()
            for rec in readers.read_beir_qrels(rfile):
                if rec["qid"] not in all_qids:
                    raise InputError(rfile, f"qrels name qid {rec['qid']!r}, which is not in queries.jsonl", rec["line"])
                judged.add(rec["qid"])
            keep = judged
            if split == train_split and not keep_unjudged:
                keep = _positive_qids(readers.read_beir_qrels(rfile))
            kept, _, qstats = _write_queries(readers.read_beir_queries(qfile), stage / f"queries.{split}.parquet", qfile,
                                             keep)
            qstats.update(_write_qrels(readers.read_beir_qrels(rfile), stage / f"qrels.{split}.parquet", rfile, judged,
                                       pids, kept))
            qstats["candidates"] = _write_candidates(iter(()), stage / f"candidates.{split}.parquet", rfile, kept, pids)
            stats["splits"][split] = _judged_stats(qstats, judged, kept)
        _check_splits(stats, train_split, src)
        _check_overlap(stage, splits, train_split, stats, src)
        _finish(stage, stats)
    return stats


def _check_splits(stats: dict, train_split: str | None, source: str | Path) -> None:
    """Stop before any later stage runs: an evaluation split without a relevant judgment (its
    metrics would be NaN), a training split without a query to train on."""
    for split, s in stats["splits"].items():
        if split == train_split and s["judged_queries"] == 0:
            raise InputError(source, f"training split {split!r} has no query with a judgment above 0: nothing "
                                     "to train on (check its qrels)")
        if split != train_split and s["positive_judgments"] == 0:
            raise InputError(source, f"evaluation split {split!r} has no judgment above 0: its metrics would be "
                                     "undefined (check its qrels)")


def _check_overlap(stage: Path, splits: list[str], train_split: str | None, stats: dict, source: str | Path) -> None:
    """A training query in an evaluation split is an error (its metrics would not be held out); the
    same query text in both is counted in stats.json and logged (MS MARCO has a few)."""
    if train_split not in splits:
        return
    train = pq.read_table(stage / f"queries.{train_split}.parquet").to_pydict()
    train_qids, train_texts = set(train["qid"]), {" ".join(t.lower().split()) for t in train["text"]}
    for split in splits:
        if split == train_split:
            continue
        table = pq.read_table(stage / f"queries.{split}.parquet").to_pydict()
        shared = sorted(set(table["qid"]) & train_qids)
        if shared:
            raise InputError(source, f"qid {shared[0]!r} is in the training split {train_split!r} and in the "
                                     f"evaluation split {split!r} ({len(shared)} such queries): its metrics would "
                                     "not be held out")
        same = sum(" ".join(t.lower().split()) in train_texts for t in table["text"])
        stats["splits"][split]["same_text_as_training"] = same
        if same:
            log.warning("%d queries of split %r have the same text as a training query", same, split)


def _finish(stage: Path, stats: dict) -> None:
    with open(stage / "stats.json", "w", encoding="utf-8") as fh:
        json.dump(stats, fh, indent=1)
    empty = stats["collection"]["empty_texts"]
    if empty:
        log.warning("%d document(s) have empty text (e.g. %s); they are kept but can never be retrieved by text",
                    empty, ", ".join(stats["collection"]["empty_text_pids"][:5]))
