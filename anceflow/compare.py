"""Compare systems over seeds: the mean and spread of each system's metrics, and paired tests.

A result a reviewer can trust says how much of a difference is noise. Two sources: the training
seed (a different seed gives other negatives, another data order, another head) and the sample
of queries. Per system and split, :func:`seed_summary` gives the mean over seeds and the standard
deviation across them. For a trained system against a baseline (ANCE's last round against the
equal-step BM25-Neg control, or against round 0), :func:`paired_comparison` takes each query's
metric difference within a seed, averages it over the seeds (a query is the unit, seeds are
nested in it), and gives

* the mean difference over queries with a 95% confidence interval from a paired bootstrap over
  queries (``ci_low``, ``ci_high``; percentile interval of the resampled means), and
* a two-sided p-value from a paired randomization test (each query's difference flips its sign at
  random; Smucker, Allan and Carterette, CIKM 2007, recommend it for IR).

Both are seeded, so the same inputs always give the same figures.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

from anceflow.evaluate import METRICS, SUMMARY_COLUMNS
from anceflow.io import atomic_path

#: Metrics compared per query (MS MARCO's MRR@10 and TREC DL's NDCG@10).
COMPARED = ("ndcg@10", "mrr@10")
COMPARISON_COLUMNS = ["split", "metric", "system", "baseline", "seeds", "queries", "system_mean", "baseline_mean",
                      "diff", "ci_low", "ci_high", "p_value"]


def seed_summary(tables: Mapping[int, pd.DataFrame]) -> pd.DataFrame:
    """metrics.tsv over seeds: its columns with each metric's mean over the seeds, then ``seeds``
    and the standard deviation across seeds of every metric (``<metric>_std``; 0 for one seed)."""
    both = pd.concat([t.assign(_seed=s) for s, t in tables.items()], ignore_index=True)
    keys = ["system", "split", "ranking"]
    order = both.drop_duplicates(keys)[keys]
    grouped = both.groupby(keys, sort=False)
    mean = grouped[["queries", *METRICS]].mean().reset_index()
    std = grouped[METRICS].std(ddof=1).fillna(0.0).add_suffix("_std").reset_index()
    out = order.merge(mean, on=keys).merge(std, on=keys)
    out["seeds"] = grouped["_seed"].nunique().values
    out["queries"] = out["queries"].round().astype(int)
    return out[[*SUMMARY_COLUMNS, "seeds", *[f"{m}_std" for m in METRICS]]]


def query_differences(system: Mapping[int, pd.DataFrame], baseline: Mapping[int, pd.DataFrame],
                      metric: str) -> pd.Series:
    """Per query, the system's metric minus the baseline's within each seed, averaged over seeds."""
    seeds = sorted(set(system) & set(baseline))
    if not seeds:
        raise ValueError("no seed has both systems")
    diffs = []
    for seed in seeds:
        a = system[seed].set_index("qid")[metric]
        b = baseline[seed].set_index("qid")[metric]
        if set(a.index) != set(b.index):
            raise ValueError(f"seed {seed}: the two systems were evaluated on different queries")
        diffs.append((a - b.reindex(a.index)).rename(seed))
    return pd.concat(diffs, axis=1).mean(axis=1)


def bootstrap_ci(diffs: np.ndarray, *, resamples: int = 10_000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean of ``diffs`` over resampled queries."""
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, 1000):  # blocks: memory is 1000 x queries, not resamples x queries
        n = min(1000, resamples - start)
        means[start:start + n] = diffs[rng.integers(0, len(diffs), size=(n, len(diffs)))].mean(axis=1)
    tail = (1 - level) / 2
    return float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail))


def randomization_p(diffs: np.ndarray, *, resamples: int = 10_000, seed: int = 0) -> float:
    """Two-sided paired randomization test of a zero mean difference (random sign flips)."""
    rng = np.random.default_rng(seed)
    observed = abs(diffs.mean())
    hits = 0
    for start in range(0, resamples, 1000):
        n = min(1000, resamples - start)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(n, len(diffs)))
        hits += int((np.abs((signs * diffs).mean(axis=1)) >= observed - 1e-12).sum())
    return (hits + 1) / (resamples + 1)


def paired_comparison(system: Mapping[int, pd.DataFrame], baseline: Mapping[int, pd.DataFrame], metric: str, *,
                      resamples: int = 10_000, seed: int = 0) -> dict:
    """Mean per-query difference (pooled over seeds), its 95% CI and p-value, and both means."""
    d = query_differences(system, baseline, metric)
    values = d.to_numpy(dtype=float)
    low, high = bootstrap_ci(values, resamples=resamples, seed=seed)
    seeds = sorted(set(system) & set(baseline))
    return {"seeds": len(seeds), "queries": len(values),
            "system_mean": float(np.mean([system[s][metric].mean() for s in seeds])),
            "baseline_mean": float(np.mean([baseline[s][metric].mean() for s in seeds])),
            "diff": float(values.mean()), "ci_low": low, "ci_high": high,
            "p_value": randomization_p(values, resamples=resamples, seed=seed)}


def compare_systems(per_query: Mapping[tuple[str, str, int], pd.DataFrame], trained: Iterable[str],
                    baselines: Iterable[str], *, resamples: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """comparison.tsv: every trained system against every baseline present, per split and metric.

    ``per_query`` maps (system, split, seed) to that run's per-query table (eval/.../*.per_query.tsv).
    """
    rows = []
    splits = list(dict.fromkeys(split for _, split, _ in per_query))
    for split in splits:
        by_system: dict[str, dict[int, pd.DataFrame]] = {}
        for (system, s, seed_), table in per_query.items():
            if s == split:
                by_system.setdefault(system, {})[seed_] = table
        for baseline in baselines:
            for system in trained:
                if system == baseline or system not in by_system or baseline not in by_system:
                    continue
                for metric in COMPARED:
                    rows.append({"split": split, "metric": metric, "system": system, "baseline": baseline,
                                 **paired_comparison(by_system[system], by_system[baseline], metric,
                                                     resamples=resamples, seed=seed)})
    return pd.DataFrame(rows, columns=COMPARISON_COLUMNS)


def verdict(row: Mapping) -> str:
    """One line a paper can quote: the difference, its interval, p, and what that allows to say."""
    if row["ci_low"] > 0:
        said = "ahead"
    elif row["ci_high"] < 0:
        said = "behind"
    else:
        said = "not distinguishable at 95%"
    return (f"{row['system']} vs {row['baseline']} ({row['split']}, {row['metric']}): {row['diff']:+.4f} "
            f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}], p = {row['p_value']:.3g}, over {row['seeds']} seed"
            f"{'s' if row['seeds'] != 1 else ''} x {row['queries']} queries: {said}")


def verdict_lines(table: pd.DataFrame, trained: list[str]) -> list[str]:
    """The report's words: first whether ANCE's last round beats the equal-step BM25-Neg control
    (or, without a control, the warmup), per split and metric; then every other comparison."""
    rounds = [s for s in trained if s.startswith("round-")]
    last = rounds[-1] if rounds else None
    headline = table[(table["system"] == last) & (table["baseline"] == ("bm25neg" if "bm25neg" in trained
                                                                        else "round-0"))]
    lines = [("ANCE's rounds vs the equal-step control: " if "bm25neg" in trained else "ANCE's rounds vs the warmup: ")
             + verdict(row) for row in headline.to_dict("records")]
    lines += [verdict(row) for row in table.drop(headline.index).to_dict("records")]
    return lines or ["nothing to compare (no trained system beside a baseline)"]


def read_per_query(path: str | Path) -> pd.DataFrame:
    return pd.read_csv(path, sep="\t", dtype={"qid": str})


def write_tsv(path: str | Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.4f", na_rep="nan")
