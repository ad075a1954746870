"""anceflow.compare: means over seeds, paired bootstrap intervals and randomization tests."""

import itertools

import numpy as np
import pandas as pd
import pytest

from anceflow.compare import (bootstrap_ci, compare_systems, paired_comparison, query_differences, randomization_p,
                              seed_summary, verdict)
from anceflow.evaluate import METRICS, SUMMARY_COLUMNS


def metrics_table(system_values: dict[str, float]) -> pd.DataFrame:
    rows = []
    for system, value in system_values.items():
        rows.append({"system": system, "split": "dev", "queries": 10, **{m: value for m in METRICS}, "ranking": "full"})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def test_seed_summary_keeps_the_first_columns_and_adds_means_and_spread():
    out = seed_summary({42: metrics_table({"bm25": 0.5, "round-1": 0.6}), 43: metrics_table({"bm25": 0.5, "round-1": 0.8})})
    assert list(out.columns[:len(SUMMARY_COLUMNS)]) == SUMMARY_COLUMNS
    row = out.set_index("system").loc["round-1"]
    assert row["ndcg@10"] == pytest.approx(0.7) and row["ndcg@10_std"] == pytest.approx(np.std([0.6, 0.8], ddof=1))
    assert row["seeds"] == 2 and row["queries"] == 10
    assert out.set_index("system").loc["bm25", "mrr@10_std"] == 0
    assert out["system"].tolist() == ["bm25", "round-1"]  # the order of metrics.tsv


def per_query(values, qids=None):
    qids = qids or [f"q{i}" for i in range(len(values))]
    return pd.DataFrame({"qid": qids, "ndcg@10": values, "mrr@10": values})


def test_differences_are_paired_within_a_seed_then_averaged_over_seeds():
    system = {1: per_query([0.5, 1.0, 0.0]), 2: per_query([0.7, 1.0, 0.2])}
    baseline = {1: per_query([0.5, 0.5, 0.0]), 2: per_query([0.3, 1.0, 0.2])}
    d = query_differences(system, baseline, "ndcg@10")
    assert d.to_dict() == pytest.approx({"q0": 0.2, "q1": 0.25, "q2": 0.0})
    with pytest.raises(ValueError, match="different queries"):
        query_differences({1: per_query([0.1], ["a"])}, {1: per_query([0.1], ["b"])}, "ndcg@10")


def test_randomization_p_matches_the_exact_test_on_few_queries():
    rng = np.random.default_rng(3)
    diffs = rng.normal(0.05, 0.1, size=10)
    observed = abs(diffs.mean())
    flips = np.array(list(itertools.product([-1, 1], repeat=10)))
    exact = np.mean(np.abs((flips * diffs).mean(axis=1)) >= observed - 1e-12)
    assert randomization_p(diffs, resamples=20_000, seed=1) == pytest.approx(exact, abs=0.01)
    assert randomization_p(np.full(20, 0.1), resamples=5_000) == pytest.approx(1 / 5_001)  # every flip is smaller


def test_bootstrap_interval_agrees_with_the_normal_interval_on_many_queries():
    rng = np.random.default_rng(0)
    diffs = rng.normal(0.02, 0.2, size=2_000)
    low, high = bootstrap_ci(diffs, resamples=4_000, seed=5)
    half = 1.96 * diffs.std(ddof=1) / np.sqrt(len(diffs))
    assert low == pytest.approx(diffs.mean() - half, abs=0.002) and high == pytest.approx(diffs.mean() + half, abs=0.002)
    assert bootstrap_ci(np.full(50, 0.3)) == pytest.approx((0.3, 0.3))
    assert bootstrap_ci(diffs, seed=5, resamples=4_000) == (low, high)  # seeded


def test_comparison_table_and_verdict():
    rng = np.random.default_rng(7)
    base = {s: per_query(list(rng.uniform(0, 1, 200))) for s in (1, 2, 3)}
    better = {s: per_query(list(np.clip(t["ndcg@10"] + 0.1, 0, 1.5))) for s, t in base.items()}
    same = {s: per_query(list(t["ndcg@10"] + rng.normal(0, 0.05, 200))) for s, t in base.items()}
    tables = {**{("bm25neg", "dev", s): t for s, t in base.items()},
              **{("round-2", "dev", s): t for s, t in better.items()},
              **{("round-1", "dev", s): t for s, t in same.items()}}
    out = compare_systems(tables, ["round-1", "round-2", "bm25neg"], ["bm25neg"], resamples=2_000)
    assert set(zip(out["system"], out["metric"])) == {("round-1", "ndcg@10"), ("round-1", "mrr@10"),
                                                      ("round-2", "ndcg@10"), ("round-2", "mrr@10")}
    row = out[(out["system"] == "round-2") & (out["metric"] == "ndcg@10")].iloc[0]
    assert row["diff"] == pytest.approx(0.1) and row["ci_low"] > 0.09 and row["p_value"] < 0.001
    assert row["seeds"] == 3 and row["queries"] == 200
    assert verdict(row).endswith("over 3 seeds x 200 queries: ahead")
    flat = out[(out["system"] == "round-1") & (out["metric"] == "ndcg@10")].iloc[0]
    assert flat["ci_low"] < 0 < flat["ci_high"] and "not distinguishable" in verdict(flat)
    one = paired_comparison({1: better[1]}, {1: base[1]}, "mrr@10", resamples=1_000)
    assert one["seeds"] == 1 and one["diff"] == pytest.approx(0.1)
