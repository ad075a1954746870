"""Corpus encoding speed: anceflow's encoder vs sentence-transformers `encode`, same model and texts.

Both encode the same SciFact passages (or the first --limit) with all-MiniLM-L6-v2 at the same max
length and batch size on the same threads, alternating, best of --repeats. Ours is timed from text
(tokenize + encode, as sentence-transformers does both). Prints passages/s, tokens/s, the largest
absolute difference between the two sets of vectors, and, as its last line,
speedup_vs_sentence_transformers=<ratio>.

    python bench/encode.py [--limit 1000] [--precision auto|fp32|bf16] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import Figures, add_record_args, minilm_checkpoint

REPO = Path(__file__).resolve().parents[1]
MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def read_texts(path: Path, limit: int | None) -> list[str]:
    texts = []
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            texts.append(line.rstrip("\n").split("\t", 1)[1])
            if limit and len(texts) >= limit:
                break
    return texts


def ours(texts: list[str], max_len: int, batch_size: int, precision: str, workdir: Path) -> tuple[np.ndarray, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from anceflow.encode import encode_table
    from anceflow.tokenize import tokenize_corpus

    ckpt = workdir / "ckpt"
    if not ckpt.exists():
        minilm_checkpoint(ckpt, MODEL)
    pq.write_table(pa.table({"pid": [str(i) for i in range(len(texts))], "text": texts}), workdir / "c.parquet")
    stats = tokenize_corpus(workdir / "c.parquet", workdir / "tok", MODEL, max_len=max_len, progress=False)
    encode_table(ckpt, workdir / "tok", workdir / "v.npy", side="doc", batch_size=batch_size, precision=precision,
                 progress=False)
    return np.load(workdir / "v.npy"), stats["tokens"]


def theirs(model, texts: list[str], batch_size: int) -> np.ndarray:
    return model.encode(texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--collection", default=str(REPO.parent / "shared/datasets/scifact/collection.tsv"))
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--max-len", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--precision", default="auto", help="ours: auto (the pipeline default), fp32 or bf16")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=2)
    add_record_args(ap)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from sentence_transformers import SentenceTransformer

    from anceflow.model_source import resolve_model_path

    texts = read_texts(Path(args.collection), args.limit)
    st = SentenceTransformer(resolve_model_path(MODEL), device="cpu")
    st.max_seq_length = args.max_len
    times = {"ours": [], "sentence-transformers": []}
    with tempfile.TemporaryDirectory() as tmp:
        theirs(st, texts[:8], 8)  # warm both up (thread pools, first-call costs)
        ours(texts[:8], args.max_len, 8, args.precision, Path(tmp))
        for _ in range(args.repeats):
            t = time.perf_counter()
            mine, tokens = ours(texts, args.max_len, args.batch_size, args.precision, Path(tmp))
            times["ours"].append(time.perf_counter() - t)
            t = time.perf_counter()
            ref = theirs(st, texts, args.batch_size)
            times["sentence-transformers"].append(time.perf_counter() - t)
    diff = float(np.abs(mine.astype(np.float32) - ref).max())
    cosine = float(np.mean(np.sum(mine * ref, axis=1) / (np.linalg.norm(mine, axis=1) * np.linalg.norm(ref, axis=1))))
    from anceflow.encode import resolve_precision

    resolved = resolve_precision(torch.device("cpu"), args.precision)
    name = "encode" if args.precision == "auto" else f"encode-{args.precision}"
    out = Figures(name, f"Encoding: ours vs sentence-transformers (precision {args.precision})")
    out(f"{len(texts)} SciFact passages, {tokens} tokens (max length {args.max_len}), batch {args.batch_size}, "
        f"{args.threads} threads; ours precision={args.precision} (here: {resolved}), sentence-transformers fp32; "
        f"best of {args.repeats}, alternating")
    for who, ts in times.items():
        best = min(ts)
        out(f"{who:<22} {best:7.2f} s  {len(texts) / best:8.1f} passages/s  {tokens / best:9.0f} tokens/s")
    out(f"max |ours - sentence-transformers| = {diff:.2e}; mean cosine = {cosine:.6f}")
    out(f"speedup_vs_sentence_transformers={min(times['sentence-transformers']) / min(times['ours']):.3f}")
    out.record(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
