"""Metrics against values computed by hand on a toy run (trec_eval conventions)."""

import math

import pytest

from anceflow.evaluate import evaluate_run, read_run, rerank, summarize, write_metrics, write_run

QRELS = {
    "q1": {"d1": 1, "d2": 0, "d3": 2},
    "q2": {"d5": 1},
    "q3": {"d9": 0},  # no relevant document: not evaluated
    "q4": {"d7": 1},  # missing from the run: counts as 0
}
RUN = {
    "q1": {"d4": 3.0, "d1": 2.0, "d3": 1.0, "d2": 0.5},
    "q2": {"d6": 5.0, "d5": 5.0},  # a tie: trec_eval ranks d6 before d5 (docid descending)
    "q3": {"d9": 1.0},
}
LOG2_3 = math.log2(3)


def by_qid(df):
    return df.set_index("qid").to_dict("index")


def test_per_query_metrics_by_hand():
    m = by_qid(evaluate_run(RUN, QRELS))
    assert set(m) == {"q1", "q2", "q4"}
    # q1: ranks d4 (unjudged), d1 (1), d3 (2), d2 (0)
    assert m["q1"]["mrr@10"] == pytest.approx(0.5)
    dcg = 1 / LOG2_3 + 2 / 2.0
    idcg = 2 / 1.0 + 1 / LOG2_3
    assert m["q1"]["ndcg@10"] == pytest.approx(dcg / idcg, abs=1e-4)
    assert m["q1"]["recall@100"] == pytest.approx(1.0)
    assert m["q1"]["hole@10"] == pytest.approx(0.25)
    # q2: the tie puts d6 first
    assert m["q2"]["mrr@10"] == pytest.approx(0.5)
    assert m["q2"]["ndcg@10"] == pytest.approx(1 / LOG2_3, abs=1e-4)
    assert m["q2"]["hole@10"] == pytest.approx(0.5)
    # q4: nothing retrieved
    assert m["q4"]["mrr@10"] == 0 and m["q4"]["ndcg@10"] == 0 and m["q4"]["recall@1000"] == 0
    assert math.isnan(m["q4"]["hole@10"])


def test_summary_means_and_queries():
    row = summarize(evaluate_run(RUN, QRELS), "sys", "dev")
    assert row["queries"] == 3
    assert row["mrr@10"] == pytest.approx((0.5 + 0.5 + 0) / 3, abs=1e-4)
    assert row["recall@100"] == pytest.approx(2 / 3, abs=1e-4)
    assert row["hole@10"] == pytest.approx((0.25 + 0.5) / 2, abs=1e-4)


def test_relevance_level_two():
    m = by_qid(evaluate_run(RUN, QRELS, relevance_level=2))
    assert set(m) == {"q1"}  # only q1 has a grade >= 2
    assert m["q1"]["mrr@10"] == pytest.approx(1 / 3)
    assert m["q1"]["recall@100"] == pytest.approx(1.0)


def test_mrr_is_cut_at_ten_and_recall_at_depth():
    qrels = {"q": {"rel": 1}}
    run = {"q": {f"d{i:02d}": 100.0 - i for i in range(10)} | {"rel": 1.0}}  # relevant at rank 11
    m = by_qid(evaluate_run(run, qrels))["q"]
    assert m["mrr@10"] == 0.0
    assert m["recall@100"] == 1.0
    assert m["hole@10"] == 1.0


def test_run_round_trip_keeps_trec_eval_order(tmp_path):
    path = tmp_path / "run.trec"
    write_run(path, RUN, "test")
    lines = path.read_text().splitlines()
    assert lines[4].split()[:4] == ["q2", "Q0", "d6", "1"] and lines[5].split()[:4] == ["q2", "Q0", "d5", "2"]
    assert read_run(path) == RUN
    write_run(path, RUN, "test", depth=1)
    assert len(path.read_text().splitlines()) == 3


def test_rerank_scores_only_candidates():
    candidates = {"q1": ["d2", "d1", "d3"]}
    run = rerank(candidates, lambda qid, pids: [{"d1": 3, "d2": 1, "d3": 2}[p] for p in pids])
    assert run == {"q1": {"d1": 3.0, "d2": 1.0, "d3": 2.0}}
    assert by_qid(evaluate_run(run, {"q1": {"d1": 1}}))["q1"]["mrr@10"] == 1.0


def test_metrics_table_header(tmp_path):
    path = tmp_path / "metrics.tsv"
    write_metrics(path, [summarize(evaluate_run(RUN, QRELS), "bm25", "dev")])
    header, row = path.read_text().splitlines()
    # The first eight columns are fixed; new ones come after them.
    assert header == "system\tsplit\tqueries\tmrr@10\tndcg@10\trecall@100\trecall@1000\thole@10\tmrr@100\tranking"
    assert row.startswith("bm25\tdev\t3\t0.3333\t") and row.endswith("\tfull")


def test_mrr_at_100_reaches_past_ten():
    qrels = {"q": {"rel": 1}}
    run = {"q": {f"d{i:03d}": 1000.0 - i for i in range(150)} | {"rel": 1000.0 - 24.5}}  # relevant at rank 26
    m = by_qid(evaluate_run(run, qrels))["q"]
    assert m["mrr@10"] == 0.0 and m["mrr@100"] == pytest.approx(1 / 26)
    far = {"q": {f"d{i:03d}": 1000.0 - i for i in range(150)} | {"rel": 1.0}}  # rank 151
    assert by_qid(evaluate_run(far, qrels))["q"]["mrr@100"] == 0.0
