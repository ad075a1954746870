"""Parsers for the input layouts, each yielding validated records with their line numbers.

Every parser reads bytes and decodes line by line, so a bad byte, a malformed line
or a duplicate id is reported as ``file:line: what is wrong`` (an ``InputError``)
instead of surfacing later as a confusing failure in another stage.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from anceflow.errors import InputError

# Columns of collection.tsv by field count (MS MARCO passages, BEIR-style title, MS MARCO docs).
COLLECTION_LAYOUTS = {
    2: ("pid", "text"),
    3: ("pid", "title", "text"),
    4: ("pid", "url", "title", "text"),
}


def iter_lines(path: str | Path) -> Iterator[tuple[int, str]]:
    """Yield (line number, text) for each non-blank line, decoding UTF-8 strictly."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    path, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})", lineno
                ) from None
            line = line.rstrip("\n").rstrip("\r")
            if lineno == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark is not part of the first id
            if line.strip():
                yield lineno, line


def check_id(path: str | Path, value: str, what: str, lineno: int) -> str:
    """An id as given; one with a space, tab or other whitespace inside is an error here (a TREC run
    separates its fields by whitespace, so such an id would break every run file later)."""
    if any(c.isspace() for c in value):
        raise InputError(path, f"{what} {value!r} contains whitespace; ids must not (TREC runs split on it)", lineno)
    return value


def read_collection_tsv(path: str | Path) -> Iterator[dict]:
    """``pid<TAB>text``, ``pid<TAB>title<TAB>text`` or ``pid<TAB>url<TAB>title<TAB>text``.

    The layout is fixed by the first line; every line must have the same number of fields.
    """
    columns = None
    for lineno, line in iter_lines(path):
        fields = line.split("\t")
        if columns is None:
            columns = COLLECTION_LAYOUTS.get(len(fields))
            if columns is None:
                raise InputError(
                    path,
                    f"expected 2, 3 or 4 tab-separated fields (pid, [url,] [title,] text), found {len(fields)}",
                    lineno,
                )
        elif len(fields) != len(columns):
            raise InputError(
                path, f"expected {len(columns)} tab-separated fields ({', '.join(columns)}), found {len(fields)}", lineno
            )
        record = dict(zip(columns, fields))
        if not record["pid"].strip():
            raise InputError(path, "empty pid", lineno)
        record["pid"] = check_id(path, record["pid"].strip(), "pid", lineno)
        record["line"] = lineno
        yield record


def read_queries_tsv(path: str | Path) -> Iterator[dict]:
    """``qid<TAB>text``."""
    for lineno, line in iter_lines(path):
        fields = line.split("\t")
        if len(fields) != 2:
            raise InputError(path, f"expected 2 tab-separated fields (qid, text), found {len(fields)}", lineno)
        qid = fields[0].strip()
        if not qid:
            raise InputError(path, "empty qid", lineno)
        yield {"qid": check_id(path, qid, "qid", lineno), "text": fields[1], "line": lineno}


def read_qrels_tsv(path: str | Path) -> Iterator[dict]:
    """TREC qrels ``qid 0 pid rel``, tab or space separated."""
    for lineno, line in iter_lines(path):
        fields = line.split()
        if len(fields) != 4:
            raise InputError(path, f"expected 4 fields (qid, 0, pid, rel), found {len(fields)}", lineno)
        try:
            rel = int(fields[3])
        except ValueError:
            raise InputError(path, f"relevance must be an integer, found {fields[3]!r}", lineno) from None
        yield {"qid": fields[0], "pid": fields[2], "rel": rel, "line": lineno}


def read_candidates_tsv(path: str | Path) -> Iterator[dict]:
    """``qid<TAB>pid`` in rank order (a reranking candidate list such as MS MARCO top1000.dev)."""
    for lineno, line in iter_lines(path):
        fields = line.split()
        if len(fields) != 2:
            raise InputError(path, f"expected 2 fields (qid, pid), found {len(fields)}", lineno)
        yield {"qid": fields[0], "pid": fields[1], "line": lineno}


def _json_lines(path: str | Path) -> Iterator[tuple[int, dict]]:
    for lineno, line in iter_lines(path):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(path, f"invalid JSON: {exc.msg} (column {exc.colno})", lineno) from None
        if not isinstance(obj, dict) or "_id" not in obj:
            raise InputError(path, "expected a JSON object with an '_id' field", lineno)
        yield lineno, obj


def read_beir_corpus(path: str | Path) -> Iterator[dict]:
    """BEIR ``corpus.jsonl``: ``{"_id", "title", "text"}`` per line."""
    for lineno, obj in _json_lines(path):
        yield {
            "pid": check_id(path, str(obj["_id"]), "_id", lineno),
            "title": str(obj.get("title") or ""),
            "text": str(obj.get("text") or ""),
            "line": lineno,
        }


def read_beir_queries(path: str | Path) -> Iterator[dict]:
    """BEIR ``queries.jsonl``: ``{"_id", "text"}`` per line."""
    for lineno, obj in _json_lines(path):
        yield {"qid": check_id(path, str(obj["_id"]), "_id", lineno), "text": str(obj.get("text") or ""),
               "line": lineno}


def read_beir_qrels(path: str | Path) -> Iterator[dict]:
    """BEIR ``qrels/<split>.tsv``: a header line, then ``query-id<TAB>corpus-id<TAB>score``."""
    first = True
    for lineno, line in iter_lines(path):
        fields = line.split("\t")
        if first:
            first = False
            if fields[0].strip().lower() in ("query-id", "query_id", "qid"):
                continue
        if len(fields) != 3:
            raise InputError(path, f"expected 3 tab-separated fields (query-id, corpus-id, score), found {len(fields)}", lineno)
        try:
            rel = int(fields[2])
        except ValueError:
            raise InputError(path, f"score must be an integer, found {fields[2]!r}", lineno) from None
        yield {"qid": fields[0].strip(), "pid": fields[1].strip(), "rel": rel, "line": lineno}
