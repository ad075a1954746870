"""Vector precision for dot-product models: does bf16 encoding or float16 storage reorder rankings?

ANCE's head (cls -> Linear -> LayerNorm, dot product) gives unnormalised vectors whose dot
products are large next to the gaps between neighbours, where bf16's ~3 significant digits could
reorder a ranking. This trains all-MiniLM-L6-v2 under ANCE's head on the demo (the workflow's
round 0, `bench/configs/demo-ance-head.yaml`), then encodes the demo's and SciFact's corpus and dev
queries with that checkpoint in every combination of

* encoding: fp32; bf16 autocast with the head in bf16 (the encoder's output and the head both under
  autocast: before this bench); bf16 autocast with the head and its LayerNorm in fp32 (now);
* corpus storage: float32 or float16 (queries are always stored float32),

searches exactly, and prints per combination: encoding time, the share of queries whose top-10
equals the fp32/float32 reference, the mean overlap of the top-10, and MRR@10 / nDCG@10 and their
difference to the reference (pytrec_eval). The last line names the fastest combination within
0.002 of the reference on both metrics on every collection: ``fastest_within_0.002=<name>``.

    python bench/precision.py [--cores 2] [--no-scifact]
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from common import REPO, SCIFACT, Figures, add_record_args, run_targets  # noqa: E402

CONFIG = REPO / "bench/configs/demo-ance-head.yaml"
VARIANTS = [  # (name, precision, head in fp32, storage)
    ("fp32 / float32", "fp32", True, np.float32),
    ("fp32 / float16", "fp32", True, np.float16),
    ("bf16 head bf16 / float32", "bf16", False, np.float32),
    ("bf16 head bf16 / float16", "bf16", False, np.float16),
    ("bf16 head fp32 / float32", "bf16", True, np.float32),
    ("bf16 head fp32 / float16", "bf16", True, np.float16),
]


def tokenized(prep: Path, out: Path, tokenizer: str, q_len: int, d_len: int) -> tuple[Path, Path]:
    from anceflow.tokenize import tokenize_corpus, tokenize_queries

    tokenize_corpus(prep / "collection.parquet", out / "corpus", tokenizer, max_len=d_len, progress=False)
    tokenize_queries(prep / "queries.dev.parquet", out / "queries.dev", tokenizer, max_len=q_len, progress=False)
    return out / "corpus", out / "queries.dev"


def encode(model, prefix: Path, side: str, precision: str, fp32_head: bool, pad_id: int) -> tuple[np.ndarray, float]:
    from anceflow.encode import encode_rows
    from anceflow.tokenize import TokenTable

    model.fp32_head = fp32_head
    table = TokenTable.open(prefix)
    out = np.zeros((len(table), model.dim), dtype=np.float32)
    t0 = time.time()
    encode_rows(model, table, np.arange(len(table)), out, side=side, pad_id=pad_id, batch_size=64,
                device=torch.device("cpu"), precision=precision, progress=False)
    return out, time.time() - t0


def top(queries: np.ndarray, corpus: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries.astype(np.float32) @ corpus.astype(np.float32).T
    rows = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, rows, axis=1), rows


def metrics(scores, rows, qids, pids, qrels) -> dict:
    from anceflow.evaluate import evaluate_run, summarize

    run = {q: {pids[r]: float(s) for r, s in zip(rr, ss)} for q, rr, ss in zip(qids, rows, scores)}
    return summarize(evaluate_run(run, qrels), "x", "dev")


def compare(out: Figures, name: str, checkpoint: Path, prep: Path, work: Path) -> dict[str, bool]:
    """Every variant on one collection; returns {variant: within 0.002 of the reference on both}."""
    from anceflow.evaluate import read_qrels
    from anceflow.model import load_dual_encoder, load_tokenizer

    spec = load_dual_encoder(checkpoint).spec
    corpus_prefix, query_prefix = tokenized(prep, work / name, str(checkpoint), spec.max_query_len, spec.max_doc_len)
    model = load_dual_encoder(checkpoint).eval()
    pad_id = load_tokenizer(checkpoint).pad_token_id or 0
    pids = pd.read_parquet(prep / "collection.parquet")["pid"].tolist()
    qids = pd.read_parquet(prep / "queries.dev.parquet")["qid"].tolist()
    qrels = read_qrels(prep / "qrels.dev.parquet")
    encoded = {}
    for precision, fp32_head in {(p, h) for _, p, h, _ in VARIANTS}:
        d, d_s = encode(model, corpus_prefix, "doc", precision, fp32_head, pad_id)
        q, _ = encode(model, query_prefix, "query", precision, fp32_head, pad_id)
        encoded[precision, fp32_head] = (d, q, d_s)
    ref_d, ref_q, _ = encoded["fp32", True]
    ref_s, ref_rows = top(ref_q, ref_d, 1000)
    ref = metrics(ref_s, ref_rows, qids, pids, qrels)
    out(f"{name}: {len(pids):,} documents, {len(qids)} dev queries; reference fp32 / float32: "
        f"MRR@10 {ref['mrr@10']:.4f}, nDCG@10 {ref['ndcg@10']:.4f}; |score| ~ {np.abs(ref_s[:, 0]).mean():.1f}, "
        f"gap 1st-10th ~ {np.mean(ref_s[:, 0] - ref_s[:, 9]):.3f}")
    out(f"  {'encoding / corpus storage':<26} {'encode s':>8} {'same top-10':>11} {'overlap@10':>10} {'MRR@10':>7} "
        f"{'diff':>8} {'nDCG@10':>7} {'diff':>8}")
    ok = {}
    for variant, precision, fp32_head, storage in VARIANTS:
        d, q, seconds = encoded[precision, fp32_head]
        scores, rows = top(q, d.astype(storage), 1000)
        m = metrics(scores, rows, qids, pids, qrels)
        same = np.mean([list(a) == list(b) for a, b in zip(rows[:, :10], ref_rows[:, :10])])
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(rows[:, :10], ref_rows[:, :10])])
        dm, dn = m["mrr@10"] - ref["mrr@10"], m["ndcg@10"] - ref["ndcg@10"]
        ok[variant] = abs(dm) <= 0.002 and abs(dn) <= 0.002
        out(f"  {variant:<26} {seconds:>8.1f} {same:>11.3f} {overlap:>10.3f} {m['mrr@10']:>7.4f} {dm:>+8.4f} "
            f"{m['ndcg@10']:>7.4f} {dn:>+8.4f}")
    return ok


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(CONFIG))
    ap.add_argument("--cores", default="2")
    ap.add_argument("--no-scifact", action="store_true")
    add_record_args(ap)
    args = ap.parse_args()
    torch.set_num_threads(int(args.cores))
    res = run_targets(args, "warmup")  # round 0 trained, encoded, evaluated by the workflow itself
    checkpoint = res / "checkpoints/round-0"
    out = Figures("precision", "Vector precision: bf16 encoding and float16 storage with ANCE's head (dot product)")
    out("all-MiniLM-L6-v2 with ANCE's head (cls -> Linear -> LayerNorm, dot product), trained as the demo's round 0")
    work = Path(tempfile.mkdtemp(prefix="anceflow-precision-"))
    try:
        ok = compare(out, "demo", checkpoint, res / "prepared", work)
        if not args.no_scifact and (SCIFACT / "collection.tsv").exists():
            from anceflow.prepare import prepare_local

            prepare_local(SCIFACT, work / "scifact-prep", ["dev"], progress=False)
            for variant, fine in compare(out, "scifact", checkpoint, work / "scifact-prep", work).items():
                ok[variant] = ok[variant] and fine
    finally:
        shutil.rmtree(work, ignore_errors=True)
    speed = {"fp32": 2, "bf16": 1}  # bf16 encodes faster than fp32 on this CPU (and on GPUs); float16 halves storage
    order = sorted(VARIANTS, key=lambda v: (speed[v[1]], v[3] is np.float32, not v[2]))
    best = next((v[0] for v in order if ok[v[0]]), "none")
    out(f"fastest_within_0.002={best.replace(' ', '')}")
    out.record(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
