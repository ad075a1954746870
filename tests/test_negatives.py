"""Negative sampling: never a judged positive, seeded, limited to the top-k."""

import pandas as pd

from anceflow.negatives import mine, overlap_with, positive_ranks, sample_negatives, select_queries

RUN = {
    "q1": ["p1", "n1", "n2", "p2", "n3", "n4", "n5", "n6", "n7", "n8"],
    "q2": ["n1", "m1", "m2", "m3"],
    "q3": ["z1"],
}
QRELS = {
    "q1": {"p1": 1, "p2": 2, "n8": 0},  # n8 judged non-relevant: a fine negative
    "q2": {"n1": 1},
    "q3": {"z1": 1},  # its only candidate is its positive
    "q4": {"x": 1},  # not in the run
}


def test_never_a_positive_and_within_depth():
    df, stats = sample_negatives(RUN, QRELS, n=3, seed=1, depth=8)
    assert stats["pairs"] == 5 and stats["pairs_without_negatives"] == 2
    assert stats["positives_in_topk"] == 2 + 1 + 1  # p1, p2 for q1; n1 for q2; z1 for q3
    assert stats["queries_missing_from_run"] == 1
    for row in df.itertuples():
        positives = {p for p, r in QRELS[row.qid].items() if r > 0}
        assert not positives & set(row.neg_pids)
        assert set(row.neg_pids) <= set(RUN[row.qid][:8])
        assert len(set(row.neg_pids)) == len(row.neg_pids)
    assert sorted(df["pos_pid"]) == ["n1", "p1", "p2"]
    q2 = df[df.qid == "q2"].iloc[0]
    assert sorted(q2.neg_pids) == ["m1", "m2", "m3"]


def test_same_seed_same_negatives_other_seed_differs():
    a, _ = sample_negatives(RUN, QRELS, n=3, seed=7, depth=10)
    b, _ = sample_negatives(RUN, QRELS, n=3, seed=7, depth=10)
    assert a.to_dict("records") == b.to_dict("records")
    draws = {tuple(sample_negatives(RUN, QRELS, n=3, seed=s, depth=10)[0].iloc[0].neg_pids) for s in range(10)}
    assert len(draws) > 1


def test_a_query_draw_does_not_depend_on_other_queries():
    alone, _ = sample_negatives(RUN, {"q1": QRELS["q1"]}, n=4, seed=3, depth=10)
    together, _ = sample_negatives(RUN, QRELS, n=4, seed=3, depth=10)
    assert alone.to_dict("records") == together[together.qid == "q1"].to_dict("records")


def test_fewer_candidates_than_requested_takes_all():
    df, stats = sample_negatives(RUN, {"q2": {"n1": 1}}, n=20, seed=0, depth=200)
    assert sorted(df.iloc[0].neg_pids) == ["m1", "m2", "m3"]
    assert stats["mean_negatives"] == 3.0


def test_rounds_draw_differently_from_the_same_run():
    a, _ = sample_negatives(RUN, QRELS, n=3, seed=7, depth=10, round_=1)
    b, _ = sample_negatives(RUN, QRELS, n=3, seed=7, depth=10, round_=2)
    assert a.iloc[0].neg_pids != b.iloc[0].neg_pids or a.iloc[1].neg_pids != b.iloc[1].neg_pids


def test_query_fraction_is_seeded_per_round():
    qrels = {f"q{i}": {"p": 1} for i in range(100)}
    half = select_queries(qrels, 0.25, seed=1, round_=1)
    assert len(half) == 25 and half == select_queries(qrels, 0.25, seed=1, round_=1)
    assert half != select_queries(qrels, 0.25, seed=1, round_=2)
    assert select_queries(qrels, 1.0, seed=1, round_=1) is qrels


def test_positive_ranks_and_overlap():
    assert positive_ranks(RUN, QRELS, depth=10) == [1, 1, 1, None]  # q1: p1 first; q2: n1; q3: z1; q4 absent
    assert positive_ranks({"q": ["a", "b", "p"]}, {"q": {"p": 1}}, depth=2) == [None]
    prev = pd.DataFrame({"qid": ["q"], "pos_pid": ["p"], "neg_pids": [["a", "b", "c", "d"]]})
    now = pd.DataFrame({"qid": ["q", "x"], "pos_pid": ["p", "y"], "neg_pids": [["a", "e"], ["z"]]})
    assert overlap_with(now, prev) == 0.5


def test_mine_reports_diagnostics():
    df, stats = mine(RUN, QRELS, n=3, seed=1, depth=8, round_=1)
    assert stats["round"] == 1 and stats["queries"] == 4
    assert stats["positives_removed"] == 4 and stats["queries_with_positive_in_topk"] == 3
    assert stats["positive_rank_mean"] == 1.0 and stats["overlap_with_previous"] is None
    again, stats2 = mine(RUN, QRELS, n=3, seed=1, depth=8, round_=2, previous=df)
    assert 0.0 <= stats2["overlap_with_previous"] <= 1.0
