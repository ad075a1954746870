"""Report: metrics against the round, loss curves, per-round mining diagnostics, and the audit of
each round's negatives (false-negative indicators across rounds)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on cluster nodes
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from anceflow.io import atomic_path  # noqa: E402

PLOTTED = ["mrr@10", "ndcg@10", "recall@100", "hole@10"]


def round_number(system: str) -> int | None:
    match = re.fullmatch(r"round-(\d+)", system)
    return int(match.group(1)) if match else None


def save_png(fig, out_png: str | Path) -> None:
    """Lay out, write atomically, and free a figure."""
    fig.tight_layout()
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)


def full_ranking(metrics_tsv: str | Path) -> pd.DataFrame:
    """The rows of metrics.tsv that rank the whole collection (not reranked candidate lists)."""
    df = pd.read_csv(metrics_tsv, sep="\t", dtype={"split": str})
    return (df[df["ranking"] == "full"] if "ranking" in df else df).copy()


def plot_metrics(metrics_tsv: str | Path, out_png: str | Path) -> None:
    """One panel per (split, metric): the rounds as a line; BM25, zero-shot and the BM25-negative
    control (as long as all rounds) as horizontal lines."""
    df = full_ranking(metrics_tsv)
    df["round"] = df["system"].map(round_number)
    splits = list(dict.fromkeys(df["split"]))
    fig, axes = plt.subplots(len(splits), len(PLOTTED), figsize=(4 * len(PLOTTED), 3.2 * len(splits)), squeeze=False)
    for i, split in enumerate(splits):
        part = df[df["split"] == split]
        rounds = part.dropna(subset=["round"]).sort_values("round")
        for j, metric in enumerate(PLOTTED):
            ax = axes[i][j]
            ax.plot(rounds["round"].astype(int), rounds[metric], marker="o", label="ANCE rounds")
            for system, style, color in (("bm25", "--", "gray"), ("zeroshot", ":", "black"),
                                         ("bm25neg", "-.", "tab:red")):
                row = part[part["system"] == system]
                if len(row):
                    ax.axhline(float(row[metric].iloc[0]), linestyle=style, color=color, label=system)
            ax.set_title(f"{metric} ({split})")
            ax.set_xlabel("round (0 = warmup)")
            ax.set_xticks(rounds["round"].astype(int).tolist())
            ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    save_png(fig, out_png)


def plot_losses(log_csvs: list[str | Path], out_png: str | Path) -> None:
    """Training loss of every round against the global step (each training continues at the step
    its starting checkpoint ended: the bm25neg control where round 0 ends, as round 1 does)."""
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for path in log_csvs:
        log = pd.read_csv(path)
        if len(log):
            ax.plot(log["global_step"], log["loss"], label=Path(path).name.split(".")[0], linewidth=1)
    ax.set_xlabel("global step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", ncol=4)
    save_png(fig, out_png)


def self_check_table(jsons: list[str | Path]) -> pd.DataFrame:
    """One row per dense system: how its search ran and its id self-check (corpus rows searched with
    their own vectors that came back under their own pid; anceflow.search.check_self_retrieval)."""
    rows = []
    for path in jsons:
        r = json.loads(Path(path).read_text())
        rows.append({"system": r.get("system") or Path(path).parent.name, "search": r.get("how"),
                     "status": r["status"], "probes": r.get("probes"), "hits": r.get("hits"), "rate": r.get("rate"),
                     "at_rank_1": r.get("at_rank_1"), "below_rank_1": r.get("below_rank_1"),
                     "beyond_list": r.get("beyond_list")})
    return pd.DataFrame(rows, columns=["system", "search", "status", "probes", "hits", "rate", "at_rank_1",
                                       "below_rank_1", "beyond_list"])


def rounds_table(stats_jsons: list[str | Path], log_csvs: list[str | Path], metrics_tsv: str | Path,
                 self_checks: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per round: its mining diagnostics, final training loss, the id self-check of its
    checkpoint's search (share of hits; :func:`self_check_table`), and eval metrics."""
    metrics = full_ranking(metrics_tsv)
    checks = {} if self_checks is None else dict(zip(self_checks["system"], self_checks["rate"]))
    rows = []
    for stats_path, log_path in zip(stats_jsons, log_csvs):
        stats = json.loads(Path(stats_path).read_text())
        log = pd.read_csv(log_path)
        n = stats.get("round", 0)
        row = {"round": n, "mined_queries": stats["queries"], "pairs_with_negatives": stats["examples"],
               "positives_removed": stats["positives_removed"],
               "positive_rank_mean": stats["positive_rank_mean"], "positive_rank_median": stats["positive_rank_median"],
               "overlap_with_previous": stats["overlap_with_previous"],
               "final_loss": float(log["loss"].iloc[-1]) if len(log) else None,
               "id_self_check": checks.get(f"round-{n}")}
        for _, m in metrics[metrics["system"] == f"round-{n}"].iterrows():
            row[f"ndcg@10 ({m['split']})"] = m["ndcg@10"]
            row[f"mrr@10 ({m['split']})"] = m["mrr@10"]
        rows.append(row)
    return pd.DataFrame(rows)


def write_table(df: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, sep="\t", index=False, float_format="%.4f")


def plot_compute(compute: pd.DataFrame, metrics_tsv: str | Path, out_png: str | Path) -> None:
    """Quality against cumulative compute: nDCG@10 of round n at the hours spent through round n
    (shared work included), and the control at its own; GPU-hours where jobs had GPUs, else CPU-hours."""
    metrics = full_ranking(metrics_tsv)
    parts = compute[compute["part"] != "total"].set_index("part")
    unit = "gpu" if parts["gpu_hours"].sum() > 0 else "cpu"
    splits = list(dict.fromkeys(metrics["split"]))
    fig, axes = plt.subplots(1, len(splits), figsize=(5 * len(splits), 3.5), squeeze=False)
    for ax, split in zip(axes[0], splits):
        part = metrics[metrics["split"] == split].set_index("system")
        rounds = [p for p in parts.index if p.startswith("round-") and p in part.index]
        ax.plot([parts.loc[r, f"cumulative_{unit}_hours"] for r in rounds], [part.loc[r, "ndcg@10"] for r in rounds],
                marker="o", label="ANCE rounds")
        for r in rounds:
            ax.annotate(r.removeprefix("round-"), (parts.loc[r, f"cumulative_{unit}_hours"], part.loc[r, "ndcg@10"]),
                        textcoords="offset points", xytext=(4, 4), fontsize="small")
        if "bm25neg" in parts.index and "bm25neg" in part.index:
            ax.plot([parts.loc["bm25neg", f"cumulative_{unit}_hours"]], [part.loc["bm25neg", "ndcg@10"]], marker="s",
                    linestyle="none", color="tab:red", label="bm25neg")
        ax.set_xlabel(f"cumulative {unit.upper()}-hours")
        ax.set_ylabel(f"nDCG@10 ({split})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    save_png(fig, out_png)


def audit_table(stats_jsons: list[str | Path], audit_jsons: list[str | Path]) -> pd.DataFrame:
    """One row per round: the score gap between positive and negatives (dense rounds), and the
    shares of negatives that are near-duplicates of a positive, judged positives of another query,
    flagged by the cross-encoder (when one is configured), or also in the previous round."""
    rows = []
    for stats_path, audit_path in zip(stats_jsons, audit_jsons):
        stats, audit = json.loads(Path(stats_path).read_text()), json.loads(Path(audit_path).read_text())
        gap = stats.get("score_gap") or {}
        cross_encoder = stats.get("cross_encoder") or {}
        rows.append({
            "round": stats.get("round", 0),
            "negatives": audit["negatives"],
            "gap_p5": gap.get("p5"), "gap_p25": gap.get("p25"), "gap_median": gap.get("median"),
            "gap_p75": gap.get("p75"), "gap_p95": gap.get("p95"),
            "above_positive_share": gap.get("above_positive_share"),
            "near_duplicate_share": audit["near_duplicate_share"],
            "positive_of_other_query_share": audit["positive_of_other_query_share"],
            "cross_encoder_flagged_share": cross_encoder.get("flagged_share"),
            "margin_dropped_share": stats.get("margin_dropped_share"),
            "overlap_with_previous": stats.get("overlap_with_previous"),
        })
    return pd.DataFrame(rows)


SHARES = [("near_duplicate_share", "near-duplicate of a positive"),
          ("positive_of_other_query_share", "judged positive of another query"),
          ("cross_encoder_flagged_share", "flagged by the cross-encoder"),
          ("above_positive_share", "scores above its positive"),
          ("overlap_with_previous", "also in the previous round")]


def plot_audit(table: pd.DataFrame, out_png: str | Path) -> None:
    """Left: the score gap (positive - negative, mining checkpoint's scores) per round as boxes
    (5th, 25th, 50th, 75th, 95th percentiles; round 0's BM25 negatives have none). Right: the
    shares of negatives that look like false negatives, per round."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    dense = table.dropna(subset=["gap_median"])
    boxes = [{"label": str(int(r["round"])), "whislo": r["gap_p5"], "q1": r["gap_p25"], "med": r["gap_median"],
              "q3": r["gap_p75"], "whishi": r["gap_p95"], "fliers": []} for _, r in dense.iterrows()]
    if boxes:
        left.bxp(boxes, positions=dense["round"].astype(int).tolist(), showfliers=False)
        left.axhline(0.0, color="gray", linewidth=0.8, linestyle="--")
    else:
        left.text(0.5, 0.5, "no dense rounds", ha="center", va="center", transform=left.transAxes)
    left.set_title("score gap: positive - negative (p5..p95)")
    left.set_xlabel("round")
    left.grid(alpha=0.3)
    rounds = table["round"].astype(int)
    for column, label in SHARES:
        values = pd.to_numeric(table[column], errors="coerce")
        if values.notna().any():
            right.plot(rounds[values.notna()], values.dropna(), marker="o", label=label)
    right.set_title("share of negatives")
    right.set_xlabel("round (0 = BM25 negatives)")
    right.set_xticks(rounds.tolist())
    right.set_ylim(bottom=0)
    right.grid(alpha=0.3)
    right.legend(fontsize="small")
    save_png(fig, out_png)
