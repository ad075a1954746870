"""Round 0 (warmup on BM25 negatives) on SciFact's train split with all-MiniLM-L6-v2.

Runs the `warmup` target (and `bm25`, `zeroshot` for comparison) and prints the dev table and
the training time, and records them in BENCHMARKS.md (one section per config). Nothing is
asserted: the figures are reported as measured. `bench/configs/scifact-minilm-fp32.yaml` trains as
before bf16 autocast and attention dropout off on CPUs: the quality reference for those defaults.

    python bench/warmup_scifact.py [--config bench/configs/scifact-minilm.yaml]
"""

from __future__ import annotations

import sys

import pandas as pd

from common import Figures, parse_args, results_dir, run_targets  # noqa: E402 (bench/ is on sys.path when run as a script)


def main() -> int:
    args = parse_args(__doc__)
    res = run_targets(args, "bm25", "zeroshot", "warmup")
    name = results_dir(args).name
    out = Figures(f"warmup-{name}", f"Warmup (round 0) on SciFact: {name}")
    rows = [pd.read_csv(res / f"eval/{system}/dev.metrics.tsv", sep="\t") for system in ("bm25", "zeroshot", "round-0")]
    for line in pd.concat(rows).iloc[:, :8].to_string(index=False).splitlines():
        out(line)
    bench = pd.read_csv(res / "benchmarks/train.round-0.tsv", sep="\t").iloc[0]
    log = pd.read_csv(res / "train/round-0.log.csv")
    out(f"warmup training: {int(log['step'].iloc[-1])} steps in {bench['s']:.0f} s "
        f"({log['examples_per_s'].mean():.1f} examples/s), peak RSS {bench['max_rss']:.0f} MB, "
        f"final loss {log['loss'].iloc[-1]:.4f}")
    out.record(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
