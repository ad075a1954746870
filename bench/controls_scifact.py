"""A false-negative control on SciFact: the ANCE rounds without and with it, and the audit of the negatives.

Runs the whole workflow (target `all`) with bench/configs/scifact-minilm.yaml twice: as it is, then
with one control of `ance.negatives` switched on (``--control``; default a relative margin of 0.05,
sentence-transformers' ``relative_margin=0.05``, NV-Retriever's TopK-PercPos at 95%). Both runs keep
intermediate files, so the second re-mines and retrains only rounds >= 1 from the same mining runs
(BM25, zeroshot and round 0 are shared; the bm25neg control, whose figures bench/rounds_scifact.py
records, only with ``--bm25neg``: it adds as many CPU steps as both rounds). Prints the dev metrics side by side,
each run's audit table (report/audit.tsv) and the control's mining statistics, and copies the
controlled run's audit plot to ``--plot``. Figures are reported as measured, and recorded in BENCHMARKS.md.

With ``--seeds K`` both runs cover training seeds 42..42+K-1 (config key ``seeds``): the tables are
means over seeds, the audit is averaged over seeds (the plot is the first seed's), and each run's
paired comparisons (comparison.tsv: round-N against bm25neg and round-0, per-query differences
pooled over seeds, bootstrap 95% interval, randomization p) are printed; the run without the
control keeps its metrics.tsv and comparison.tsv in ``results/<name>/without-control/``.

    python bench/controls_scifact.py [--control '{relative_margin: 0.05}'] [--plot docs/img/audit-scifact.png]
        [--seeds 3] [--bm25neg]
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import yaml

from common import REPO, Figures, comparison_lines, parse_args, run_targets, training_seeds  # noqa: E402 (bench/ is on sys.path when run as a script)

SHOWN = ["ndcg@10", "mrr@10", "recall@100", "hole@10"]
AUDIT = ["round", "gap_p5", "gap_median", "gap_p95", "above_positive_share", "near_duplicate_share",
         "positive_of_other_query_share", "margin_dropped_share", "overlap_with_previous"]


def extra(ap) -> None:
    ap.add_argument("--control", default="{relative_margin: 0.05}", help="ance.negatives settings (YAML mapping)")
    ap.add_argument("--plot", default=str(REPO / "docs/img/audit-scifact.png"), help="where the audit plot goes")
    ap.add_argument("--bm25neg", action="store_true", help="also train the bm25neg control (shared by both runs)")
    ap.add_argument("--seeds", type=int, default=1, help="training seeds (42, 43, ...); 1: the config's seed")


def seed_dirs(res: Path, seeds: list[int]) -> list[Path]:
    """Where each seed's report lives: seed-<s>/ with several seeds, the results folder with one."""
    return [res / f"seed-{s}" for s in seeds] if len(seeds) > 1 else [res]


def read_run(res: Path, seeds: list[int]) -> dict:
    """A finished run's metrics, its audit averaged over seeds, and (several seeds) its comparisons."""
    audits = [pd.read_csv(d / "report/audit.tsv", sep="\t") for d in seed_dirs(res, seeds)]
    audit = pd.concat(audits).groupby("round", as_index=False).mean(numeric_only=True)
    found = {"metrics": pd.read_csv(res / "metrics.tsv", sep="\t"), "audit": audit}
    if len(seeds) > 1:
        found["comparison"] = comparison_lines(res)
    return found


def run(args, overlay: dict, folder: Path, name: str) -> tuple[Path, float]:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(overlay))
    t = time.time()
    res = run_targets(args, "all", extra=[str(path)])
    return res, time.time() - t


def main() -> int:
    args = parse_args(__doc__, extra)
    control = yaml.safe_load(args.control)
    seeds = training_seeds(args.seeds)
    out = Figures("controls-scifact", "A false-negative control on SciFact (all-MiniLM-L6-v2, CPU)")
    with tempfile.TemporaryDirectory() as tmp:
        shared = {"keep_intermediate": True, "ance": {"control": args.bm25neg}}
        if len(seeds) > 1:
            shared["seeds"] = seeds
        base_res, base_s = run(args, shared, Path(tmp), "baseline")
        base = read_run(base_res, seeds)
        kept = base_res / "without-control"
        kept.mkdir(exist_ok=True)
        for name in ("metrics.tsv", "comparison.tsv"):
            if (base_res / name).exists():
                shutil.copyfile(base_res / name, kept / name)
        ctl_res, ctl_s = run(args, {**shared, "ance": {**shared["ance"], "negatives": control}}, Path(tmp), "control")
        ctl = read_run(ctl_res, seeds)
        first = seed_dirs(ctl_res, seeds)[0]
        mining = [json.loads((first / f"negatives/round-{n}.json").read_text())
                  for n in range(1, len(ctl["audit"]))]
        Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(first / "report/audit.png", args.plot)

    def dev(metrics):
        full = metrics[(metrics["split"] == "dev") & (metrics.get("ranking", "full") == "full")]
        return full.set_index("system")[SHOWN]

    table = dev(base["metrics"]).join(dev(ctl["metrics"]), rsuffix=" (control)")
    table = table[[c for m in SHOWN for c in (m, f"{m} (control)")]]
    out(f"control: ance.negatives = {json.dumps(control)}")
    if len(seeds) > 1:
        out(f"means over seeds {seeds}; the audit is averaged over them, the plot is seed {seeds[0]}'s")
    out("SciFact dev (300 queries), without / with the control (systems up to round 0 are shared):")
    for line in table.to_string(float_format="%.4f").splitlines():
        out(line)
    last = [s for s in table.index if s.startswith("round-")][-1]
    gain = table.loc[last, "ndcg@10 (control)"] - table.loc[last, "ndcg@10"]
    out(f"\n{last} nDCG@10 with the control - without: {gain:+.4f}")
    if "bm25neg" in table.index:
        out(f"{last} nDCG@10 with the control - bm25neg: {table.loc[last, 'ndcg@10 (control)'] - table.loc['bm25neg', 'ndcg@10']:+.4f}")
    for name, run_ in (("without the control", base), ("with the control", ctl)):
        out(f"\naudit of the negatives, {name} (report/audit.tsv):")
        for line in run_["audit"][AUDIT].to_string(index=False, float_format="%.4f").splitlines():
            out(line)
    for name, run_ in (("without the control", base), ("with the control", ctl)):
        if "comparison" not in run_:
            continue
        out(f"\npaired comparisons, nDCG@10, {name} (comparison.tsv):")
        for line in run_["comparison"]:
            out(line)
    out(f"\nmining with the control (negatives/round-<n>.json{f', seed {seeds[0]}' if len(seeds) > 1 else ''}):")
    for stats in mining:
        out(f"round {stats['round']}: {stats['examples']} pairs with negatives of {stats['pairs']}, "
            f"{stats['pairs_short']} with fewer than asked, mean {stats['mean_negatives']:.2f} negatives"
            + (f", margin dropped {stats['margin_dropped_share']:.1%} of the candidates"
               if "margin_dropped_share" in stats else ""))
    out(f"\nwall time: {base_s:.0f} s without the control (whole pipeline, unless already done), "
        f"{ctl_s:.0f} s with it (rounds >= 1 only)")
    out.record(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
