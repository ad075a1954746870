"""Training speed: anceflow's trainer vs sentence-transformers' trainer, same model, examples and batches.

Warmup (round-0) training on SciFact's train split with all-MiniLM-L6-v2 (mean pooling, cosine),
batches of 16 x (query, positive, 1 BM25 hard negative), the same threads and steps:

- ours: ``anceflow.train.train`` with the pipeline's defaults (``train.precision: auto``) on the
  workflow's tokenized data and BM25 negatives;
- sentence-transformers: ``SentenceTransformerTrainer`` with ``MultipleNegativesRankingLoss`` on
  (anchor, positive, negative) triples (its collator tokenizes each batch), on the same examples:
  the first steps x batch of our order; twice: with its defaults (fp32 on a CPU) and with
  ``bf16=True``, its documented fast setting (autocast, as ours). The ratio is against the faster.

Two settings: SciFact at length 256 (``bench/configs/scifact-minilm.yaml``, the pipeline's
default) and at 128 (``scifact-minilm-128.yaml``, passage lengths like MS MARCO's). Each run is
a fresh subprocess (its peak RSS is its own), alternating ours / theirs, best of --repeats;
examples/s counts the steps after the first --skip. Everything the runs read is built through
the workflow first, so this runs in a fresh clone. The last line is
``train_speedup_vs_sentence_transformers=<ratio>`` at length 256, against the faster of the two
sentence-transformers settings.

``reference_loop`` (a plain PyTorch loop) is what ``bench/gpu.py`` compares against on a GPU.

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

import numpy as np
import torch

from common import REPO, Figures, parse_args, results_dir, run_targets

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

def workflow_inputs(res: Path, max_len: int) -> dict[str, str]:
    tok = res / f"tokens/all-MiniLM-L6-v2.q{max_len}.d{max_len}"
    return {"negatives": str(res / "negatives/round-0.parquet"), "init": str(res / "checkpoints/zeroshot"),
            "query_tokens": str(tok / "queries.train"), "corpus_tokens": str(tok / "corpus")}


def st_dataset(res: Path, inputs: dict, n: int):
    """The first ``n`` examples of our (seeded) order as (anchor, positive, negative) texts."""
    import datasets
    import pandas as pd

    from anceflow.prepare import iter_documents
    from anceflow.train import TrainingData

    data = TrainingData.build(inputs["negatives"], inputs["query_tokens"], inputs["corpus_tokens"], 1, 42)
    q_text = pd.read_parquet(res / "prepared/queries.train.parquet")["text"].tolist()  # row order = token rows
    d_text = [t for _, texts in iter_documents(res / "prepared/collection.parquet", 50_000) for t in texts]
    rows = np.concatenate([data.micro_batch(m, 16) for m in range(-(-n // 16))])[:n]
    return datasets.Dataset.from_dict({"anchor": [q_text[r] for r in rows[:, 0]],
                                       "positive": [d_text[r] for r in rows[:, 1]],
                                       "negative": [d_text[r] for r in rows[:, 2]]})


#: Our trainer with its defaults, and (--ablations) as it was before each change.
OURS = {"ours": {}, "ours-fp32-dropout": {"precision": "fp32", "attention_dropout": "model"},
        "ours-bf16-dropout": {"attention_dropout": "model"}}


#: sentence-transformers' trainer: its defaults, and bf16=True (its fast setting; autocast on a CPU).
ST = {"st": {}, "st-bf16": {"bf16": True}}


def child(which: str, res: Path, steps: int, batch_size: int, threads: int, max_len: int) -> dict:
    torch.set_num_threads(threads)
    inputs = workflow_inputs(res, max_len)
    if which in OURS:
        from anceflow.train import TrainSettings, train

        with tempfile.TemporaryDirectory() as tmp:
            s = TrainSettings(**inputs, out_dir=f"{tmp}/out", log_csv=f"{tmp}/log.csv", state_dir=f"{tmp}/state",
                              steps=steps, batch_size=batch_size, negatives_per_example=1, lr=2e-5, log_every=1,
                              save_every=10**9, threads=threads, **OURS[which])
            train(s, progress=False)
            ends = ours_step_ends(s.log_csv)
        return {"ends": ends, "peak_mb": peak_memory_mb(torch.device("cpu"))}
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments, losses)
    from transformers import TrainerCallback

    from anceflow.model_source import resolve_model_path

    model = SentenceTransformer(resolve_model_path("sentence-transformers/all-MiniLM-L6-v2"), device="cpu")
    model.max_seq_length = max_len
    ends, t0 = [], []

    class StepTimes(TrainerCallback):
        def on_train_begin(self, *args, **kw):
            t0.append(time.perf_counter())

        def on_step_end(self, *args, **kw):
            ends.append(time.perf_counter() - t0[0])

    with tempfile.TemporaryDirectory() as tmp:
        trainer = SentenceTransformerTrainer(
            model=model, train_dataset=st_dataset(res, inputs, steps * batch_size),
            loss=losses.MultipleNegativesRankingLoss(model),
            args=SentenceTransformerTrainingArguments(
                output_dir=tmp, per_device_train_batch_size=batch_size, max_steps=steps, learning_rate=2e-5,
                warmup_ratio=0.1, save_strategy="no", report_to=[], logging_steps=10**6, seed=42, use_cpu=True,
                dataloader_num_workers=0, **ST[which]),
            callbacks=[StepTimes()])
        trainer.train()
    return {"ends": ends, "peak_mb": peak_memory_mb(torch.device("cpu"))}


SETTINGS = {256: REPO / "bench/configs/scifact-minilm.yaml", 128: REPO / "bench/configs/scifact-minilm-128.yaml"}
WHO = {"ours": "ours (anceflow, pipeline defaults)", "st": "sentence-transformers trainer (MNRL, defaults)",
       "st-bf16": "sentence-transformers trainer (MNRL, bf16=True)",
       "ours-fp32-dropout": "  ours in fp32 with attention dropout (before)",
       "ours-bf16-dropout": "  ours in bf16 with attention dropout"}


def main() -> int:
    def extra(ap: argparse.ArgumentParser) -> None:
        ap.add_argument("--steps", type=int, default=12)
        ap.add_argument("--skip", type=int, default=2)
        ap.add_argument("--batch-size", type=int, default=16)
        ap.add_argument("--threads", type=int, default=torch.get_num_threads())
        ap.add_argument("--repeats", type=int, default=2)
        ap.add_argument("--lengths", default="256,128", help="settings to run (256 is the pipeline default)")
        ap.add_argument("--ablations", action="store_true", help="also ours as it was before each change")
        ap.add_argument("--child", choices=list(WHO), help=argparse.SUPPRESS)
        ap.add_argument("--max-len", type=int, default=256, help=argparse.SUPPRESS)

    args = parse_args(__doc__, extra)
    lengths = [int(x) for x in args.lengths.split(",")]
    if args.child:
        res = REPO / results_dir(argparse.Namespace(config=str(SETTINGS[args.max_len])))
        print(json.dumps(child(args.child, res, args.steps, args.batch_size, args.threads, args.max_len)))
        return 0

    from anceflow.encode import resolve_precision

    out = Figures("train", "Training: ours vs sentence-transformers' trainer (SciFact, MiniLM, CPU)")
    out(f"warmup training, SciFact train split, all-MiniLM-L6-v2 (mean, cosine), batch {args.batch_size} x (query, "
        f"positive, 1 BM25 negative), {args.threads} threads, {args.steps} steps (the first {args.skip} not counted), "
        f"best of {args.repeats}; ours at precision auto = {resolve_precision(torch.device('cpu'), 'auto')} here")
    ratios = {}
    for max_len in lengths:
        config = argparse.Namespace(config=str(SETTINGS[max_len]), cores=args.cores)
        res = results_dir(config)
        tok = f"{res}/tokens/all-MiniLM-L6-v2.q{max_len}.d{max_len}"
        run_targets(config, f"{res}/negatives/round-0.parquet", f"{res}/checkpoints/zeroshot",
                    f"{tok}/corpus.tokens.npy", f"{tok}/queries.train.tokens.npy")
        runs = ["ours", "st", "st-bf16"] + (["ours-fp32-dropout", "ours-bf16-dropout"] if args.ablations else [])
        results = {who: [] for who in runs}
        for _ in range(args.repeats):
            for who in runs:
                cmd = [sys.executable, __file__, "--child", who, "--max-len", str(max_len), "--steps", str(args.steps),
                       "--batch-size", str(args.batch_size), "--threads", str(args.threads)]
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
                if proc.returncode:
                    raise SystemExit(f"{who} failed:\n{proc.stderr[-3000:]}")
                results[who].append(json.loads(proc.stdout.splitlines()[-1]))
        rate = {}
        out(f"length {max_len}:")
        for who, measured in results.items():
            rates = [steady_rate(r["ends"], args.batch_size, args.skip) for r in measured]
            rate[who] = max(rates)
            out(f"  {WHO[who]:<48} {rate[who]:6.2f} examples/s  ({', '.join(f'{x:.2f}' for x in rates)})  "
                f"peak RSS {min(r['peak_mb'] for r in measured):,.0f} MB")
        faster = max(("st", "st-bf16"), key=rate.get)
        ratios[max_len] = rate["ours"] / rate[faster]
        out(f"  ours / sentence-transformers at its faster setting ({WHO[faster].split('(')[1].rstrip(')')}) = "
            f"{ratios[max_len]:.3f}")
    out.record(args)
    print(f"train_speedup_vs_sentence_transformers={ratios.get(256, next(iter(ratios.values()))):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
