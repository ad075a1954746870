"""Zero-shot parity: our `zeroshot` row vs sentence-transformers `encode` + faiss exact search.

Runs the workflow's `zeroshot` target on SciFact with all-MiniLM-L6-v2 (mean pooling, cosine,
max length 256), then encodes the same prepared texts with sentence-transformers, searches
them with faiss IndexFlatIP, evaluates with the same pytrec_eval code, and prints both dev
NDCG@10 figures and their difference (the issue asks for |diff| <= 0.002).

    python bench/zeroshot_parity.py [--config bench/configs/scifact-minilm.yaml]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import yaml

from common import Figures, parse_args, run_targets  # noqa: E402 (bench/ is on sys.path when run as a script)


def main() -> int:
    args = parse_args(__doc__, lambda ap: ap.add_argument(
        "--fresh", action="store_true", help="re-encode (after a change to the encoder that Snakemake cannot see)"))
    cfg = yaml.safe_load(Path(args.config).read_text())
    t0 = time.time()
    res = run_targets(args, "zeroshot", extra=["--forcerun", "encode_corpus", "encode_queries"] if args.fresh else [])
    ours_seconds = time.time() - t0
    ours = pd.read_csv(res / "eval/zeroshot/dev.metrics.tsv", sep="\t").iloc[0]

    from sentence_transformers import SentenceTransformer

    from anceflow.evaluate import evaluate_run, read_qrels, summarize
    from anceflow.model_source import resolve_model_path

    model = SentenceTransformer(resolve_model_path(cfg["model"]["name_or_path"]), device="cpu")
    model.max_seq_length = cfg["model"]["max_doc_len"]
    coll = pd.read_parquet(res / "prepared/collection.parquet")
    queries = pd.read_parquet(res / "prepared/queries.dev.parquet")
    t0 = time.time()
    docs = model.encode(coll["text"].tolist(), batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    qv = model.encode(queries["text"].tolist(), batch_size=64, normalize_embeddings=True, convert_to_numpy=True)
    st_seconds = time.time() - t0
    index = faiss.IndexFlatIP(docs.shape[1])
    index.add(np.ascontiguousarray(docs, dtype=np.float32))
    scores, rows = index.search(np.ascontiguousarray(qv, dtype=np.float32), 1000)
    pids = coll["pid"].tolist()
    run = {q: {pids[r]: float(s) for r, s in zip(rr, ss)} for q, rr, ss in zip(queries["qid"], rows, scores)}
    st = summarize(evaluate_run(run, read_qrels(res / "prepared/qrels.dev.parquet")), "sentence-transformers", "dev")

    diff = ours["ndcg@10"] - st["ndcg@10"]
    out = Figures("zeroshot-parity", "Zero-shot parity: the workflow vs sentence-transformers + faiss (SciFact)")
    out(f"all-MiniLM-L6-v2, mean pooling, cosine, max length {cfg['model']['max_doc_len']}; ours with encode.precision "
        f"{cfg.get('encode', {}).get('precision', 'auto')}, sentence-transformers fp32")
    out(f"ours (workflow zeroshot)        dev NDCG@10 = {ours['ndcg@10']:.4f}  R@100 = {ours['recall@100']:.4f}"
          f"  ({ours_seconds:.0f} s for the zeroshot target)")
    out(f"sentence-transformers + faiss   dev NDCG@10 = {st['ndcg@10']:.4f}  R@100 = {st['recall@100']:.4f}"
          f"  ({st_seconds:.0f} s to encode)")
    out(f"difference = {diff:+.4f} (goal: within 0.002)")
    out.record(args)
    return 0 if abs(diff) <= 0.002 else 1


if __name__ == "__main__":
    sys.exit(main())
