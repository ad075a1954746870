"""Round 0 (warmup on BM25 negatives) on SciFact's train split with all-MiniLM-L6-v2.

Runs the `warmup` target (and `bm25`, `zeroshot` for comparison) and prints the dev table and
the training time. Nothing is asserted: the figures are reported as measured.

    python bench/warmup_scifact.py [--config bench/configs/scifact-minilm.yaml]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(REPO / "bench/configs/scifact-minilm.yaml"))
    ap.add_argument("--cores", default="2")
    args = ap.parse_args()
    name = yaml.safe_load(Path(args.config).read_text())["dataset"]["name"]
    res = REPO / "results" / name
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", args.cores, "bm25", "zeroshot", "warmup",
                    "--configfile", args.config], cwd=REPO, check=True)
    rows = [pd.read_csv(res / f"eval/{system}/dev.metrics.tsv", sep="\t") for system in ("bm25", "zeroshot", "round-0")]
    print(pd.concat(rows).to_string(index=False))
    bench = pd.read_csv(res / "benchmarks/train.round-0.tsv", sep="\t").iloc[0]
    log = pd.read_csv(res / "train/round-0.log.csv")
    print(f"\nwarmup training: {int(log['step'].iloc[-1])} steps in {bench['s']:.0f} s "
          f"({log['examples_per_s'].mean():.1f} examples/s), peak RSS {bench['max_rss']:.0f} MB, "
          f"final loss {log['loss'].iloc[-1]:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
