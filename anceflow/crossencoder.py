"""Cross-encoder: relevance probabilities of (query, document) pairs, to denoise mined negatives.

Any Hugging Face sequence-classification model serves (``AutoModelForSequenceClassification``):
with one label its logit goes through a sigmoid (cross-encoder/ms-marco-*), with two the
softmax probability of label 1 is taken. Documents are read from ``collection.parquet`` in one
pass, 65,536 rows at a time and only the rows asked for, so memory is one slice plus the pairs
(never the whole collection's text: 22 GB for MS MARCO documents). Within a slice the pairs are
scored longest first, so batches pad little. On a GPU the model runs in bf16 autocast.

Cost at MS MARCO passage size (denoise mode, 20 negatives x oversample 2 per pair, 532,761
pairs): ~21M (query, passage) scorings per round, an estimated 7-14 minutes for a MiniLM-L6
cross-encoder on an H100 (docs/mining.md), a fifth of that with ``ance.query_fraction: 0.2``;
on a CPU days, which :class:`CrossEncoder` refuses to start (it measures its first batches)
unless ``index.use_gpu`` is false.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from anceflow.model_source import cross_encoder_problem
from anceflow.prepare import document_text

log = logging.getLogger(__name__)

#: Batches scored before a CPU run's time is estimated (and refused when over max_cpu_hours).
ESTIMATE_AFTER_BATCHES = 8


class CrossEncoderTooSlowError(RuntimeError):
    """Cross-encoder scoring on the CPU would take longer than the configured limit."""


def read_texts(collection: str | Path, rows: np.ndarray, *, batch_rows: int = 65536):
    """Yield ``(positions, texts)`` for sorted collection ``rows``: ``texts[i]`` is the document
    text (``document_text``: url, title, body joined by spaces) of ``rows[positions[i]]``, one
    slice of the file at a time."""
    pf = pq.ParquetFile(collection)
    columns = [c for c in ("url", "title", "text") if c in pf.schema_arrow.names]
    first = 0
    for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
        lo, hi = np.searchsorted(rows, [first, first + batch.num_rows])
        if hi > lo:
            local = rows[lo:hi] - first
            unique, inverse = np.unique(local, return_inverse=True)
            data = batch.take(pa.array(unique)).to_pydict()
            none = [None] * len(unique)
            texts = [document_text(*parts) for parts in zip(data["text"], data.get("title", none), data.get("url", none))]
            yield np.arange(lo, hi), [texts[i] for i in inverse]
        first += batch.num_rows


class CrossEncoder:
    """Relevance probability of (query row, collection row) pairs of one training split.

    ``use_gpu``: ``"auto"`` (a GPU when torch sees one, else the CPU, refusing work estimated over
    ``max_cpu_hours``), ``True`` (insist on a GPU), ``False`` (the CPU, whatever the estimate).
    """

    def __init__(self, path: str | Path, *, queries: str | Path, collection: str | Path, batch_size: int = 64,
                 max_len: int = 512, use_gpu="auto", max_cpu_hours: float | None = None, progress: bool = True):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        problem = cross_encoder_problem(path)
        if problem:
            raise ValueError(f"cross-encoder {problem}")
        if use_gpu is True and not torch.cuda.is_available():
            raise RuntimeError("index.use_gpu is true but torch sees no GPU for the cross-encoder (give rule "
                               "mine_negatives a GPU in the profile)")
        self.device = torch.device("cuda" if use_gpu is not False and torch.cuda.is_available() else "cpu")
        self.tokenizer = AutoTokenizer.from_pretrained(str(path))
        self.model = AutoModelForSequenceClassification.from_pretrained(str(path)).eval().to(self.device)
        self.labels = self.model.config.num_labels
        self.queries = pq.read_table(queries, columns=["text"]).column("text").to_pylist()
        self.collection, self.batch_size, self.max_len = collection, batch_size, max_len
        self.guard = max_cpu_hours if (use_gpu == "auto" and self.device.type == "cpu") else None
        self.progress = progress
        self.seconds = 0.0

    def predict(self, queries: list[str], docs: list[str]) -> np.ndarray:
        """Probabilities of relevance of text pairs, in the order given (one forward pass per batch)."""
        import torch

        enc = self.tokenizer(queries, docs, truncation=True, max_length=self.max_len, padding=True,
                             return_tensors="pt").to(self.device)
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16,
                                                     enabled=self.device.type == "cuda"):
            logits = self.model(**enc).logits.float()
        if self.labels == 1:
            return torch.sigmoid(logits[:, 0]).cpu().numpy()
        return torch.softmax(logits, dim=1)[:, 1].cpu().numpy()

    def __call__(self, query_rows: np.ndarray, doc_rows: np.ndarray) -> np.ndarray:
        order = np.argsort(doc_rows, kind="stable")
        sorted_docs = np.asarray(doc_rows)[order]
        out = np.empty(len(order), dtype=np.float32)
        started, done, batches = time.perf_counter(), 0, 0
        log.info("cross-encoder on %s: %d (query, document) pairs, batches of %d", self.device, len(order),
                 self.batch_size)
        with tqdm(total=len(order), desc="cross-encoder", unit=" pairs", disable=not self.progress,
                  mininterval=5) as bar:
            for positions, texts in read_texts(self.collection, sorted_docs):
                pairs = order[positions]
                queries = [self.queries[q] for q in np.asarray(query_rows)[pairs].tolist()]
                by_length = np.argsort([-(len(a) + len(b)) for a, b in zip(queries, texts)], kind="stable")
                for start in range(0, len(by_length), self.batch_size):
                    pick = by_length[start:start + self.batch_size]
                    out[pairs[pick]] = self.predict([queries[i] for i in pick], [texts[i] for i in pick])
                    done += len(pick)
                    batches += 1
                    bar.update(len(pick))
                    if batches == ESTIMATE_AFTER_BATCHES and self.guard is not None:
                        self.check_time(time.perf_counter() - started, done, len(order))
        self.seconds = time.perf_counter() - started
        log.info("cross-encoder: %d pairs in %.1f s (%.0f pairs/s)", len(order), self.seconds,
                 len(order) / max(self.seconds, 1e-9))
        return out

    def check_time(self, elapsed: float, done: int, total: int) -> None:
        hours = elapsed / done * total / 3600
        if hours > self.guard:
            raise CrossEncoderTooSlowError(
                f"cross-encoder scoring of {total:,} (query, document) pairs on the CPU: about {hours:.1f} h "
                f"(measured on the first {done:,}), over index.max_cpu_hours ({self.guard}). Give rule "
                "mine_negatives a GPU (profile: set-resources: mine_negatives: {gpu: 1}), lower "
                "ance.negatives.cross_encoder.oversample or ance.query_fraction, or set index.use_gpu: false to "
                "run it on the CPU anyway.")
        log.info("cross-encoder on the CPU: about %.2f h for %d pairs", hours, total)
