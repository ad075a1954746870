"""Training speed: anceflow's trainer vs a plain reference loop on the same model, batches and negatives.

Warmup (round-0) training on SciFact's train split with all-MiniLM-L6-v2, the bench config's
settings (batch 16, one BM25 negative per example, max length 256, AdamW, fp32 on CPU):

- ours: ``anceflow.train.train`` on the workflow's tokenized data and BM25 negatives;
- reference: the loop a user would write: the tokenizer on the raw texts of each batch,
  ``AutoModel``, mean pooling, cosine, cross-entropy over (positive, negatives), AdamW,
  gradient clipping. It takes the same examples in the same order (TrainingData's seeded
  order), so both do the same arithmetic.

Each run is a fresh subprocess (its peak RSS is its own), alternating ours/reference, best of
--repeats. examples/s counts steps after the first --skip (warm-up).

    python bench/train.py [--steps 12] [--skip 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from common import REPO, Figures, parse_args, results_dir, run_targets

TOKENS = "tokens/all-MiniLM-L6-v2.q256.d256"


def steady_rate(step_ends: list[float], examples_per_step: int, skip: int) -> float:
    """Examples/s over the steps after the first ``skip`` (``step_ends``: time at each step's end)."""
    return examples_per_step * (len(step_ends) - skip) / (step_ends[-1] - step_ends[skip - 1] if skip else step_ends[-1])


def reference_loop(model_path: str, batches, *, steps: int, n_docs: int, pooling: str, similarity: str, lr: float,
                   temperature: float, device: torch.device, dtype: torch.dtype | None = None, grad_accum: int = 1,
                   seed: int = 42) -> list[float]:
    """The obvious training loop; ``batches`` yields (query inputs, doc inputs) dicts of tensors,
    ``grad_accum`` of them per optimizer step.

    Returns the wall-clock time at the end of each step (from the loop's start).
    """
    from transformers import AutoModel

    torch.manual_seed(seed)
    model = AutoModel.from_pretrained(model_path).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)

    def embed(inputs):
        hidden = model(**inputs).last_hidden_state
        if pooling == "cls":
            pooled = hidden[:, 0]
        else:
            mask = inputs["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.normalize(pooled.float(), dim=-1) if similarity == "cosine" else pooled.float()

    ends, t0 = [], time.perf_counter()
    for _ in range(steps):
        for _, (q_in, d_in) in zip(range(grad_accum), batches):
            q_in = {k: v.to(device) for k, v in q_in.items()}
            d_in = {k: v.to(device) for k, v in d_in.items()}
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                q, d = embed(q_in), embed(d_in)
            scores = torch.einsum("bh,bnh->bn", q, d.view(q.shape[0], n_docs, -1)) / temperature
            loss = torch.nn.functional.cross_entropy(scores, torch.zeros(len(q), dtype=torch.long, device=device))
            (loss / grad_accum).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        loss.item()  # wait for the step, as a user logging the loss would
        ends.append(time.perf_counter() - t0)
    return ends


def ours_step_ends(log_csv: str | Path) -> list[float]:
    import pandas as pd

    return pd.read_csv(log_csv)["elapsed_s"].tolist()


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ----------------------------------------------------------------------------- SciFact (CPU)

def scifact_batches(res: Path, data, batch_size: int, max_len: int, tokenizer):
    """Micro-batches of raw texts tokenized per batch, in TrainingData's order."""
    import pandas as pd

    tok = res / TOKENS
    q_text = pd.read_parquet(res / "prepared/queries.train.parquet").set_index("qid")["text"]
    d_text = pd.read_parquet(res / "prepared/collection.parquet").set_index("pid")["text"]
    q_ids = pd.read_parquet(tok / "queries.train.rows.parquet").sort_values("row")["qid"].tolist()
    d_ids = pd.read_parquet(tok / "corpus.rows.parquet").sort_values("row")["pid"].tolist()
    m = 0
    while True:
        batch = data.micro_batch(m, batch_size)
        m += 1
        queries = [q_text[q_ids[r]] for r in batch[:, 0]]
        docs = [d_text[d_ids[r]] for r in batch[:, 1:].reshape(-1)]
        yield (tokenizer(queries, padding=True, truncation=True, max_length=max_len, return_tensors="pt"),
               tokenizer(docs, padding=True, truncation=True, max_length=max_len, return_tensors="pt"))


def child(which: str, res: Path, steps: int, batch_size: int, threads: int) -> dict:
    from anceflow.models import resolve_model_path
    from anceflow.train import TrainingData, TrainSettings, train

    torch.set_num_threads(threads)
    model = "sentence-transformers/all-MiniLM-L6-v2"
    tok = res / TOKENS
    device = torch.device("cpu")
    if which == "ours":
        with tempfile.TemporaryDirectory() as tmp:
            s = TrainSettings(init=str(res / "checkpoints/zeroshot"), negatives=str(res / "negatives/round-0.parquet"),
                              query_tokens=str(tok / "queries.train"), corpus_tokens=str(tok / "corpus"),
                              out_dir=f"{tmp}/out", log_csv=f"{tmp}/log.csv", state_dir=f"{tmp}/state", steps=steps,
                              batch_size=batch_size, negatives_per_example=1, precision="fp32", log_every=1,
                              save_every=10**9, threads=threads)
            train(s, progress=False)
            ends = ours_step_ends(s.log_csv)
    else:
        from transformers import AutoTokenizer

        path = resolve_model_path(model)
        data = TrainingData.build(str(res / "negatives/round-0.parquet"), str(tok / "queries.train"), str(tok / "corpus"),
                            1, 42)
        batches = scifact_batches(res, data, batch_size, 256, AutoTokenizer.from_pretrained(path))
        ends = reference_loop(path, batches, steps=steps, n_docs=2, pooling="mean", similarity="cosine", lr=2e-5,
                              temperature=0.05, device=device)
    return {"ends": ends, "peak_mb": peak_memory_mb(device)}


def main() -> int:
    def extra(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--steps", type=int, default=12)
        ap.add_argument("--skip", type=int, default=2)
        ap.add_argument("--batch-size", type=int, default=16)
        ap.add_argument("--threads", type=int, default=torch.get_num_threads())
        ap.add_argument("--repeats", type=int, default=2)
        ap.add_argument("--child", choices=["ours", "reference"], help=argparse.SUPPRESS)

    args = parse_args(__doc__, extra)
    res = results_dir(args)
    if args.child:
        print(json.dumps(child(args.child, REPO / res, args.steps, args.batch_size, args.threads)))
        return 0

    # The inputs both loops read: the workflow's prepared, tokenized data, BM25 negatives, start checkpoint.
    run_targets(args, f"{res}/negatives/round-0.parquet", f"{res}/checkpoints/zeroshot")
    out = Figures("train", "Training: our step loop vs a plain reference loop (SciFact, MiniLM, CPU)")
    results = {"ours": [], "reference": []}
    for _ in range(args.repeats):
        for which in results:
            cmd = [sys.executable, __file__, "--child", which, "--config", args.config, "--steps", str(args.steps),
                   "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
            r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=REPO).stdout.splitlines()[-1])
            results[which].append(r)
    out(f"warmup training, SciFact train split, all-MiniLM-L6-v2, batch {args.batch_size} x (query, positive, "
        f"1 BM25 negative), max length 256, fp32, {args.threads} threads; {args.steps} steps, the first {args.skip} "
        f"not counted; best of {args.repeats}")
    rate = {}
    for which, runs in results.items():
        rates = [steady_rate(r["ends"], args.batch_size, args.skip) for r in runs]
        rate[which] = max(rates)
        peak = min(r["peak_mb"] for r in runs)
        out(f"{which:<10} {rate[which]:6.2f} examples/s  ({', '.join(f'{x:.2f}' for x in rates)})  "
            f"peak RSS {peak:,.0f} MB")
    out(f"ours / reference = {rate['ours'] / rate['reference']:.3f}")
    out.record(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
