"""The demo pipeline end to end: wall time per stage, total, and a no-op re-run.

Runs the README's demo (``snakemake --cores 2 --workflow-profile profiles/local`` with
config/config.yaml) from scratch (``--forceall``), then sums each stage's job times from the
Snakemake ``benchmark:`` files its jobs wrote (``results/demo/**/benchmarks/*.tsv``, column
``s``), and times a second invocation that has nothing to do (goal: under 3 s) and a dry run.
Prints the demo's metrics table too.

    python bench/pipeline.py [--cores 2] [--no-forceall] [--rule-threads]

``--rule-threads`` leaves out the Quickstart's profile, so every rule runs with its own thread
count (2 to 4: model jobs one at a time on 2 cores), for comparison.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections import defaultdict

import pandas as pd

from common import REPO, Figures, add_record_args


def snakemake(*args: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL if "-n" in args or "--forceall" not in args else None)
    return time.perf_counter() - t


def scontrol_seconds() -> float | None:
    """How long `scontrol show config` takes (None without SLURM's client tools)."""
    if shutil.which("scontrol") is None:
        return None
    t = time.perf_counter()
    try:
        subprocess.run(["scontrol", "show", "config"], capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        pass
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cores", default="2")
    ap.add_argument("--no-forceall", action="store_true", help="time only what is stale, not the whole pipeline")
    ap.add_argument("--rule-threads", action="store_true", help="without profiles/local: the rules' own thread counts")
    add_record_args(ap)
    args = ap.parse_args()
    res = REPO / "results/demo"
    start = time.time()
    profile = [] if args.rule_threads else ["--workflow-profile", "profiles/local"]
    run = ["--cores", args.cores, *profile, *([] if args.no_forceall else ["--forceall"])]
    total = snakemake(*run)
    stages: dict[str, list[float]] = defaultdict(list)
    for tsv in res.rglob("benchmarks/*.tsv"):
        if tsv.stat().st_mtime >= start:
            stages[tsv.name.split(".")[0]].append(float(pd.read_csv(tsv, sep="\t")["s"].iloc[0]))
    noop = min(snakemake("--cores", args.cores, *profile) for _ in range(2))
    dry = min(snakemake("--cores", args.cores, *profile, "-n") for _ in range(2))

    out = Figures("pipeline", "Pipeline: the demo end to end")
    out(f"`snakemake {' '.join(run)}` (config/config.yaml: demo data, all-MiniLM-L6-v2, warmup + 2 ANCE rounds): "
        f"{total:.0f} s wall, {sum(map(len, stages.values()))} jobs")
    out(f"  {'stage':<18} {'jobs':>4} {'sum of job s':>12} {'share':>6}")
    busy = sum(sum(v) for v in stages.values())
    for stage, times in sorted(stages.items(), key=lambda kv: -sum(kv[1])):
        out(f"  {stage:<18} {len(times):>4} {sum(times):12.1f} {sum(times) / busy:6.1%}")
    out(f"  (jobs run side by side on {args.cores} cores, so the sum, {busy:.0f} s, can exceed the wall time)")
    out(f"no-op re-run (nothing to do): {noop:.2f} s (goal < 3 s); dry run (-n): {dry:.2f} s")
    probe = scontrol_seconds()
    if probe is not None and probe > 1:
        out(f"  note: `scontrol show config` takes {probe:.1f} s here, and Snakemake's SLURM plugin runs it at every "
            "start: a slurm.conf whose controller is not running (tests/slurm/cluster.py now removes its own)")
    metrics = pd.read_csv(res / "metrics.tsv", sep="\t")
    out("demo metrics (results/demo/metrics.tsv, dev split):")
    dev = metrics[metrics["split"] == "dev"].set_index("system")
    cols = [c for c in ("ndcg@10", "mrr@10", "recall@100", "recall@1000", "hole@10") if c in dev]
    for line in dev[cols].to_string(float_format=lambda x: f"{x:.4f}").splitlines():
        out("  " + line)
    out.record(args)
    return 0 if noop < 3 else 1


if __name__ == "__main__":
    sys.exit(main())
