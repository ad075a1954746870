"""ANCE rounds on SciFact with all-MiniLM-L6-v2: the dev table per system and the wall time per stage.

Runs the whole workflow (target `all`: BM25, zeroshot, warmup, `ance.rounds` rounds, the bm25neg
control, report) with bench/configs/scifact-minilm.yaml and prints NDCG@10, MRR@10, R@100 and
hole@10 for bm25, zeroshot, every round and bm25neg (round 0 continued on BM25 negatives for as
many steps as all rounds: does mining beat training as long?), the per-round mining diagnostics,
and the wall time of each stage summed over its jobs (from Snakemake's benchmark files).
Figures are reported as measured, and recorded in BENCHMARKS.md.

    python bench/rounds_scifact.py [--config bench/configs/scifact-minilm.yaml] [--seeds 3]

With ``--seeds K`` the loop runs for training seeds 42..42+K-1 (config key ``seeds``; BM25 and the
tokens shared): the table gives means over seeds with their standard deviations, and the paired
comparisons of every round against bm25neg and round-0 (comparison.tsv: per-query differences
pooled over seeds, bootstrap 95% interval, randomization p) with the report's verdict line.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

import pandas as pd

from common import Figures, comparison_lines, parse_args, run_targets, training_seeds  # noqa: E402 (bench/ is on sys.path when run as a script)


def stage_times(res: Path) -> pd.DataFrame:
    rows = []
    for path in sorted([*res.glob("benchmarks/*.tsv"), *res.glob("seed-*/benchmarks/*.tsv"),
                        *res.glob("tokens/*/benchmarks/*.tsv")]):
        rule = re.split(r"[.]", path.name)[0]
        detail = path.name[len(rule) + 1 : -4]
        rows.append({"stage": rule, "job": detail, "seconds": pd.read_csv(path, sep="\t")["s"].iloc[0]})
    df = pd.DataFrame(rows)
    return df.groupby("stage").agg(jobs=("job", "count"), seconds=("seconds", "sum")).reset_index()


def main() -> int:
    args = parse_args(__doc__, lambda ap: ap.add_argument("--seeds", type=int, default=1,
                                                         help="training seeds (42, 43, ...); 1: config's seed"))
    seeds = training_seeds(args.seeds)
    t0 = time.time()
    res = run_targets(args, "all", extra=["--config", f"seeds={seeds}"] if args.seeds > 1 else [])
    wall = time.time() - t0
    metrics = pd.read_csv(res / "metrics.tsv", sep="\t")
    dev = metrics[(metrics["split"] == "dev") & (metrics.get("ranking", "full") == "full")]
    out = Figures("rounds-scifact", "ANCE rounds on SciFact (all-MiniLM-L6-v2, CPU)")
    out("SciFact dev (300 queries):")
    columns = ["system", "ndcg@10", "mrr@10", "recall@100", "hole@10"]
    if args.seeds > 1:
        out(f"means over seeds {seeds} (std: ndcg@10_std)")
        columns += ["ndcg@10_std"]
    for line in dev[columns].to_string(index=False).splitlines():
        out(line)
    last = dev[dev["system"].str.fullmatch(r"round-\d+")].iloc[-1]
    control = dev[dev["system"] == "bm25neg"]
    if len(control):
        gain = last["ndcg@10"] - control["ndcg@10"].iloc[0]
        out(f"\n{last['system']} (refreshed negatives) - bm25neg (BM25 negatives, same steps): nDCG@10 {gain:+.4f}")
    if args.seeds > 1:
        out("\npaired comparisons, nDCG@10 (results/<name>/comparison.tsv):")
        for line in comparison_lines(res):
            out(line)
    first = res / f"seed-{seeds[0]}" if args.seeds > 1 else res
    out(f"\nper round (mining diagnostics, final loss{f', seed {seeds[0]}' if args.seeds > 1 else ''}):")
    for line in pd.read_csv(first / "report/rounds.tsv", sep="\t").to_string(index=False).splitlines():
        out(line)
    out("\nwall time per stage (all jobs of the stage, including earlier runs kept by Snakemake):")
    for line in stage_times(res).to_string(index=False).splitlines():
        out(line)
    out(f"\nthis invocation: {wall:.0f} s")
    out.record(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
