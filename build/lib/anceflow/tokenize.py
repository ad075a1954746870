"""Tokenize: text -> memory-mapped int32 token ids, once per (dataset, tokenizer, lengths).

Layout of one tokenized table ``<prefix>`` (the corpus, or one query split):
  <prefix>.tokens.npy    int32, all rows' token ids concatenated (special tokens included)
  <prefix>.lengths.npy   int32, tokens per row; row r is tokens[offsets[r]:offsets[r+1]]
  <prefix>.rows.parquet  row -> id map: corpus (row, doc, chunk, pid), queries (row, qid)

Rows are stored without padding, so disk and page cache hold only real tokens and the
encoder can batch rows of similar length. FirstP keeps the first ``max_len`` tokens;
MaxP (``chunks`` > 1) splits a document into up to ``chunks`` pieces, each wrapped in
the tokenizer's special tokens and at most ``max_len`` long (ANCE document MaxP: 4 x 512).
Everything streams in batches, so peak memory does not grow with the corpus.
"""

from __future__ import annotations

import itertools
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from anceflow.io import atomic_path
from anceflow.model_source import load_tokenizer
from anceflow.prepare import iter_documents

HEADER_BYTES = 128  # fixed .npy header size, so the final length can be written in place


class NpyAppender:
    """Append to a 1-D ``.npy`` file whose final length is unknown up front.

    Writes a fixed-size header, streams the data after it, then rewrites the header
    with the real shape on close. ``np.load(..., mmap_mode="r")`` reads the result.
    """

    def __init__(self, path: str | Path, dtype=np.int32):
        self.dtype = np.dtype(dtype)
        self.count = 0
        self.fh = open(path, "wb")
        self.fh.write(self._header(0))

    def _header(self, n: int) -> bytes:
        meta = repr({"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": (n,)})
        body = meta.encode("latin1")
        pad = HEADER_BYTES - 10 - len(body) - 1
        return b"\x93NUMPY\x01\x00" + struct.pack("<H", HEADER_BYTES - 10) + body + b" " * pad + b"\n"

    def append(self, values: np.ndarray) -> None:
        values = np.ascontiguousarray(values, dtype=self.dtype)
        self.fh.write(values.tobytes())
        self.count += values.size

    def close(self) -> None:
        self.fh.seek(0)
        self.fh.write(self._header(self.count))
        self.fh.close()


@dataclass
class TokenTable:
    """A tokenized table opened read-only from disk (memory-mapped)."""

    tokens: np.ndarray
    lengths: np.ndarray
    offsets: np.ndarray

    @classmethod
    def open(cls, prefix: str | Path) -> "TokenTable":
        tokens = np.load(f"{prefix}.tokens.npy", mmap_mode="r")
        lengths = np.load(f"{prefix}.lengths.npy", mmap_mode="r")
        offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        return cls(tokens, lengths, offsets)

    def __len__(self) -> int:
        return len(self.lengths)

    def row(self, r: int) -> np.ndarray:
        return np.asarray(self.tokens[self.offsets[r] : self.offsets[r + 1]])


def corpus_documents(corpus_prefix: str | Path) -> tuple[pa.Array, np.ndarray]:
    """The pids in collection order and each document's token rows ``[documents, chunks]``
    (-1 where a MaxP document has fewer chunks; one column for FirstP, where row = document)."""
    table = pq.read_table(f"{corpus_prefix}.rows.parquet")
    row = table.column("row").to_numpy()
    if "chunk" not in table.column_names:
        return table.column("pid").combine_chunks(), row[:, None]
    doc, chunk = table.column("doc").to_numpy(), table.column("chunk").to_numpy()
    doc_rows = np.full((int(doc.max()) + 1, int(chunk.max()) + 1), -1, dtype=np.int64)
    doc_rows[doc, chunk] = row
    return table.column("pid").filter(pa.array(chunk == 0)).combine_chunks(), doc_rows


def special_tokens(tokenizer) -> tuple[list[int], list[int]]:
    """The ids a tokenizer puts before and after a single text ([CLS] .. [SEP], <s> .. </s>)."""
    bare = tokenizer("hello", add_special_tokens=False)["input_ids"]
    full = tokenizer("hello", add_special_tokens=True)["input_ids"]
    start = next(i for i in range(len(full)) if full[i : i + len(bare)] == bare)
    return full[:start], full[start + len(bare) :]


def encode_texts(tokenizer, texts: list[str], max_len: int, chunks: int = 1) -> list[list[list[int]]]:
    """Token ids for each text: a list of chunks (one chunk for FirstP and for queries)."""
    if chunks == 1:
        ids = tokenizer(texts, add_special_tokens=True, truncation=True, max_length=max_len)["input_ids"]
        return [[row] for row in ids]
    head, tail = special_tokens(tokenizer)
    body = max_len - len(head) - len(tail)
    # Cut very long texts before tokenizing: nothing past chunks*body tokens is kept anyway,
    # and no tokenizer yields fewer than one token per 16 characters on real text.
    clipped = [t[: chunks * max_len * 16] for t in texts]
    ids = tokenizer(clipped, add_special_tokens=False, truncation=True, max_length=chunks * body)["input_ids"]
    out = []
    for row in ids:
        pieces = [row[i : i + body] for i in range(0, len(row), body)] or [[]]
        out.append([head + p + tail for p in pieces])
    return out


def _tokenize_table(batches, n_rows, tokenizer, max_len, chunks, prefix: Path, id_name: str, desc: str, progress: bool):
    """Tokenize (ids, texts) batches into <prefix>.{tokens,lengths}.npy and <prefix>.rows.parquet."""
    outputs = {s: Path(f"{prefix}.{s}") for s in ("tokens.npy", "lengths.npy", "rows.parquet")}
    with atomic_path(outputs["tokens.npy"]) as tok_tmp, atomic_path(outputs["lengths.npy"]) as len_tmp, \
            atomic_path(outputs["rows.parquet"]) as rows_tmp:
        tokens, lengths = NpyAppender(tok_tmp), NpyAppender(len_tmp)
        row_cols = ["row", "doc", "chunk", id_name] if chunks > 1 else ["row", id_name]
        schema = pa.schema([(c, pa.string() if c == id_name else pa.int64()) for c in row_cols])
        rows_writer = pq.ParquetWriter(rows_tmp, schema)
        row = doc = 0
        max_seen = 0
        with tqdm(total=n_rows, desc=desc, unit=" texts", disable=not progress, mininterval=2) as bar:
            for ids, texts in batches:
                encoded = encode_texts(tokenizer, texts, max_len, chunks)
                flat = [chunk for doc_chunks in encoded for chunk in doc_chunks]
                lens = np.fromiter((len(c) for c in flat), dtype=np.int32, count=len(flat))
                tokens.append(np.fromiter(itertools.chain.from_iterable(flat), dtype=np.int32, count=int(lens.sum())))
                lengths.append(lens)
                max_seen = max(max_seen, int(lens.max(initial=0)))
                cols = {"row": [], "doc": [], "chunk": [], id_name: []}
                for i, doc_chunks in enumerate(encoded):
                    for c in range(len(doc_chunks)):
                        cols["row"].append(row)
                        cols["doc"].append(doc + i)
                        cols["chunk"].append(c)
                        cols[id_name].append(ids[i])
                        row += 1
                doc += len(encoded)
                rows_writer.write_table(pa.Table.from_pydict({c: cols[c] for c in row_cols}, schema=schema))
                bar.update(len(texts))
        tokens.close()
        lengths.close()
        rows_writer.close()
    return {"texts": doc, "rows": row, "tokens": tokens.count, "max_row_len": max_seen}


def tokenize_corpus(collection: str | Path, prefix: str | Path, tokenizer_name: str, *, max_len: int,
                    chunks: int = 1, batch_size: int = 2048, field_separator: str = "space",
                    progress: bool = True) -> dict:
    """Tokenize ``collection.parquet`` (FirstP when chunks == 1, else MaxP). ``field_separator``
    joins url, title and body: ``space``, or ``sep_token`` (``url </s> title </s> body`` for
    RoBERTa, as the ANCE reference's document preprocessing)."""
    tokenizer = load_tokenizer(tokenizer_name)
    if field_separator not in ("space", "sep_token"):
        raise ValueError(f"field_separator must be 'space' or 'sep_token', not {field_separator!r}")
    separator = f" {tokenizer.sep_token} " if field_separator == "sep_token" else " "
    n_docs = pq.ParquetFile(collection).metadata.num_rows
    stats = _tokenize_table(iter_documents(collection, batch_size, separator), n_docs, tokenizer, max_len, chunks,
                            Path(prefix), "pid", "tokenize corpus", progress)
    return {"tokenizer": tokenizer_name, "max_len": max_len, "chunks": chunks, "field_separator": field_separator,
            **stats}


def tokenize_queries(queries: str | Path, prefix: str | Path, tokenizer_name: str, *, max_len: int,
                     batch_size: int = 2048, progress: bool = True) -> dict:
    """Tokenize one split's ``queries.<split>.parquet`` (truncated at ``max_len``)."""
    tokenizer = load_tokenizer(tokenizer_name)
    pf = pq.ParquetFile(queries)

    def batches():
        for batch in pf.iter_batches(batch_size=batch_size, columns=["qid", "text"]):
            yield batch.column("qid").to_pylist(), batch.column("text").to_pylist()

    stats = _tokenize_table(batches(), pf.metadata.num_rows, tokenizer, max_len, 1, Path(prefix), "qid",
                            "tokenize queries", progress)
    return {"tokenizer": tokenizer_name, "max_len": max_len, **stats}


def write_meta(path: str | Path, stats: dict) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        json.dump(stats, fh, indent=1)
