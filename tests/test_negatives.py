"""Negative sampling: never a judged positive, seeded, limited to the top-k; runs as arrays."""

import numpy as np
import pyarrow as pa
import pytest

from anceflow.errors import InputError
from anceflow.negatives import Judged, Negatives, make_negatives, mine, overlap_with, sample_negatives, select_queries
from anceflow.runs import read_trec_rows, rows_from_ranking

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
QIDS = ["q1", "q2", "q3", "q4", "q5"]  # q5: a query without judgments
PIDS = sorted({p for r in RUN.values() for p in r} | {"x", "unused"})


def judged(qrels: dict) -> Judged:
    triples = [(QIDS.index(q), PIDS.index(p), rel) for q, docs in qrels.items() for p, rel in docs.items()]
    q, d, rel = (np.array(col) for col in zip(*triples))
    return Judged.from_arrays(q, d, rel, pa.array(QIDS), pa.array(PIDS))


def sample(qrels=QRELS, run=RUN, **kw):
    """sample_negatives on the dicts above; returns ({(qid, pos): [neg pids]} in output order, stats)."""
    negatives, stats = sample_negatives(rows_from_ranking(run, QIDS, PIDS, 20), QIDS, judged(qrels), **kw)
    return as_dict(negatives), stats


def as_dict(neg: Negatives) -> dict:
    return {(QIDS[q], PIDS[p]): [PIDS[d] for d in neg.negatives[neg.offsets[i]:neg.offsets[i + 1]]]
            for i, (q, p) in enumerate(zip(neg.queries, neg.positives))}


def test_never_a_positive_and_within_depth():
    pairs, stats = sample(n=3, seed=1, depth=8)
    assert stats["pairs"] == 5 and stats["pairs_without_negatives"] == 2
    assert stats["positives_in_topk"] == 2 + 1 + 1  # p1, p2 for q1; n1 for q2; z1 for q3
    assert stats["queries_missing_from_run"] == 1
    for (qid, pos), negs in pairs.items():
        positives = {p for p, r in QRELS[qid].items() if r > 0}
        assert not positives & set(negs)
        assert set(negs) <= set(RUN[qid][:8])
        assert len(set(negs)) == len(negs)
    assert list(pairs) == [("q1", "p1"), ("q1", "p2"), ("q2", "n1")]  # qid order, then pid order
    assert sorted(pairs[("q2", "n1")]) == ["m1", "m2", "m3"]


def test_same_seed_same_negatives_other_seed_differs():
    assert sample(n=3, seed=7, depth=10) == sample(n=3, seed=7, depth=10)
    draws = {tuple(sample(n=3, seed=s, depth=10)[0][("q1", "p1")]) for s in range(10)}
    assert len(draws) > 1


def test_a_query_draw_does_not_depend_on_other_queries():
    alone, _ = sample({"q1": QRELS["q1"]}, n=4, seed=3, depth=10)
    together, _ = sample(n=4, seed=3, depth=10)
    assert alone == {k: v for k, v in together.items() if k[0] == "q1"}


def test_draws_match_the_per_query_stream():
    """The draw is rng(seed, round, qid).choice over the pool in rank order (what every release did)."""
    from anceflow.negatives import query_rng

    pairs, _ = sample(n=3, seed=5, depth=10, round_=2)
    pool = [p for p in RUN["q1"] if p not in ("p1", "p2")]
    rng = query_rng(5, "q1", 2)
    expected = [[pool[i] for i in rng.choice(len(pool), 3, replace=False)] for _ in ("p1", "p2")]
    assert [pairs[("q1", "p1")], pairs[("q1", "p2")]] == expected


def test_fewer_candidates_than_requested_takes_all():
    pairs, stats = sample({"q2": {"n1": 1}}, n=20, seed=0, depth=200)
    assert sorted(pairs[("q2", "n1")]) == ["m1", "m2", "m3"]
    assert stats["mean_negatives"] == 3.0


def test_rounds_draw_differently_from_the_same_run():
    a, _ = sample(n=3, seed=7, depth=10, round_=1)
    b, _ = sample(n=3, seed=7, depth=10, round_=2)
    assert a != b


def test_query_fraction_is_seeded_per_round():
    qids = [f"q{i}" for i in range(100)]
    all_judged = Judged.from_arrays(np.arange(100), np.zeros(100, dtype=int), np.ones(100, dtype=int),
                                    pa.array(qids), pa.array(["p"]))
    quarter = select_queries(all_judged, 0.25, seed=1, round_=1)
    assert len(quarter) == 25
    assert np.array_equal(quarter.queries, select_queries(all_judged, 0.25, seed=1, round_=1).queries)
    assert not np.array_equal(quarter.queries, select_queries(all_judged, 0.25, seed=1, round_=2).queries)
    assert select_queries(all_judged, 1.0, seed=1, round_=1) is all_judged


def test_overlap_with_previous_round():
    def neg(q, p, lists):
        return Negatives(np.array(q), np.array(p), np.r_[0, np.cumsum([len(x) for x in lists])],
                         np.array([d for x in lists for d in x], dtype=np.int64))

    prev = neg([0], [9], [[1, 2, 3, 4]])
    now = neg([0, 1], [9, 8], [[1, 5], [7]])  # pair (1, 8) is new: left out
    assert overlap_with(now, prev, n_docs=10) == 0.5
    assert overlap_with(neg([1], [8], [[7]]), prev, n_docs=10) is None


def test_mine_reports_diagnostics():
    rows = rows_from_ranking(RUN, QIDS, PIDS, 20)
    first, stats = mine(rows, QIDS, judged(QRELS), n=3, seed=1, depth=8, round_=1)
    assert stats["round"] == 1 and stats["queries"] == 4
    assert stats["positives_removed"] == 4 and stats["queries_with_positive_in_topk"] == 3
    assert stats["positive_rank_mean"] == 1.0 and stats["overlap_with_previous"] is None
    _, stats2 = mine(rows, QIDS, judged(QRELS), n=3, seed=1, depth=8, round_=2, previous=first, n_docs=len(PIDS))
    assert 0.0 <= stats2["overlap_with_previous"] <= 1.0


def write_trec(path, lines):
    path.write_text("".join(f"{q} Q0 {p} {r} {s} t\n" for q, p, r, s in lines))
    return path


def test_trec_rows_rank_as_trec_eval(tmp_path):
    """Rows follow trec_eval's order (score down, ties by pid down), whatever order the file has, and
    a query split over several read blocks is still one query."""
    lines = [("q2", "m1", 1, 3.0), ("q2", "m3", 2, 3.0), ("q2", "m2", 3, 5.0),
             ("q1", "n1", 1, 9.0), ("q1", "n2", 2, 8.0), ("q1", "p1", 3, 8.0), ("q1", "x", 4, 1.0)]
    path = write_trec(tmp_path / "run.trec", lines)
    unterminated = tmp_path / "unterminated.trec"  # no line end after the last hit
    unterminated.write_text(path.read_text().rstrip("\n"))
    for run, block_size in [(path, 1 << 20), (path, 64), (path, 5), (unterminated, 64), (unterminated, 1 << 20)]:
        rows = read_trec_rows(run, pa.array(QIDS), pa.array(PIDS), 3, block_size=block_size)
        named = [[PIDS[d] for d in r if d >= 0] for r in rows]
        assert named == [["n1", "p1", "n2"], ["m2", "m3", "m1"], [], [], []], (run.name, block_size)


@pytest.mark.parametrize("lines, message", [
    ([("q1", "nope", 1, 1.0)], "pid 'nope' is not in the collection"),
    ([("qx", "n1", 1, 1.0)], "qid 'qx' is not in the queries of the split"),
    ([("q1", "n1", 1, 1.0), ("q2", "n2", 1, 1.0), ("q1", "n3", 2, 0.5)], "hits of qid 'q1' are not contiguous"),
])
def test_trec_rows_errors_name_the_file(tmp_path, lines, message):
    path = write_trec(tmp_path / "bad.trec", lines)
    with pytest.raises(InputError, match=message) as err:
        read_trec_rows(path, pa.array(QIDS), pa.array(PIDS), 3)
    assert str(path) in str(err.value)


def test_make_negatives_from_trec_equals_from_rows(tmp_path):
    """BM25 (a TREC file) and dense mining (int32 rows) give the same negatives for the same ranking."""
    import pandas as pd

    from anceflow.runs import save_rows

    pd.DataFrame({"pid": PIDS, "text": PIDS}).to_parquet(tmp_path / "collection.parquet")
    pd.DataFrame({"qid": QIDS, "text": QIDS}).to_parquet(tmp_path / "queries.parquet")
    pd.DataFrame([(q, p, r) for q, d in QRELS.items() for p, r in d.items()],
                 columns=["qid", "pid", "rel"]).to_parquet(tmp_path / "qrels.parquet")
    lines = [(q, p, i + 1, 10.0 - i) for q, r in RUN.items() for i, p in enumerate(r)]
    save_rows(tmp_path / "run.npy", rows_from_ranking(RUN, QIDS, PIDS, 10))
    files = {k: tmp_path / f"{k}.parquet" for k in ("queries", "collection", "qrels")}
    outputs = []
    for run in (write_trec(tmp_path / "run.trec", lines), tmp_path / "run.npy"):
        out = tmp_path / f"neg.{run.suffix}.parquet"
        stats = make_negatives(run, out=out, n=3, seed=2, depth=8, round_=0, **files)
        table = pd.read_parquet(out)
        outputs.append(([(r.qid, r.pos_pid, list(r.neg_pids)) for r in table.itertuples()], stats))
    assert outputs[0][0] == outputs[1][0] and outputs[0][1] == outputs[1][1]
    assert outputs[0][1]["examples"] == 3


def reference_negatives(lines, qrels, *, n, seed, depth, round_):
    """The dict-based sampling every earlier release ran (read_run + trec_eval order + per-query draw)."""
    from anceflow.negatives import query_rng

    run = {}
    for q, p, _, s in lines:
        run.setdefault(q, {})[p] = float(s)
    ranking = {q: [p for p, _ in sorted(d.items(), key=lambda kv: (kv[1], kv[0]), reverse=True)]
               for q, d in run.items()}
    out = []
    for qid in sorted(qrels):
        positives = sorted(p for p, rel in qrels[qid].items() if rel > 0)
        if not positives:
            continue
        pool = [p for p in ranking.get(qid, [])[:depth] if p not in set(positives)]
        rng = query_rng(seed, qid, round_)
        for pos in positives:
            if pool:
                out.append((qid, pos, [pool[i] for i in rng.choice(len(pool), min(n, len(pool)), replace=False)]))
    return out


def test_bm25_negatives_identical_to_the_dict_implementation(tmp_path):
    """On a random run full of tied scores, the streaming array path draws exactly what the old one did."""
    import pandas as pd

    rng = np.random.default_rng(0)
    qids = [f"q{i}" for i in range(60)]
    pids = [f"d{i}" for i in range(300)]
    lines, qrels = [], {}
    for q in qids[:50]:  # 10 queries without hits
        docs = rng.choice(pids, 40, replace=False)
        scores = rng.integers(0, 6, 40).astype(float)  # many ties
        for r, (d, s) in enumerate(sorted(zip(docs, scores), key=lambda x: -x[1]), 1):
            lines.append((q, d, r, s))
    for q in qids[5:60]:
        qrels[q] = {d: int(rng.integers(0, 3)) for d in rng.choice(pids, 3, replace=False)}
    pd.DataFrame({"pid": pids, "text": pids}).to_parquet(tmp_path / "collection.parquet")
    pd.DataFrame({"qid": qids, "text": qids}).to_parquet(tmp_path / "queries.parquet")
    pd.DataFrame([(q, p, r) for q, d in qrels.items() for p, r in d.items()],
                 columns=["qid", "pid", "rel"]).to_parquet(tmp_path / "qrels.parquet")
    make_negatives(write_trec(tmp_path / "run.trec", lines), tmp_path / "queries.parquet",
                   tmp_path / "collection.parquet", tmp_path / "qrels.parquet", tmp_path / "neg.parquet",
                   n=7, seed=3, depth=25, round_=0)
    ours = [(r.qid, r.pos_pid, list(r.neg_pids)) for r in pd.read_parquet(tmp_path / "neg.parquet").itertuples()]
    assert ours == reference_negatives(lines, qrels, n=7, seed=3, depth=25, round_=0)
    assert len(ours) > 40


def test_rotating_selection_is_the_reference_chunking():
    """query_selection rotating = ann_chunk_factor: k = 1/fraction consecutive slices of the judged
    queries in file order (not qid order), round n mining slice (n-1) mod k, the last taking the rest."""
    qids = [f"q{i}" for i in range(23)]
    file_order = np.random.default_rng(0).permutation(23)  # the split's order differs from qid order
    judged_all = Judged.from_arrays(file_order, np.zeros(23, dtype=int), np.ones(23, dtype=int),
                                    pa.array([qids[i] for i in file_order]), pa.array(["p"]))
    slices = [sorted(select_queries(judged_all, 0.2, seed=1, round_=n, mode="rotating").queries.tolist())
              for n in range(1, 7)]
    assert slices[:5] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11], [12, 13, 14, 15], list(range(16, 23))]
    assert slices[5] == slices[0]
    with pytest.raises(ValueError, match="rotating"):
        select_queries(judged_all, 0.2, seed=1, round_=1, mode="sometimes")


# --------------------------------------------------------------------------- false-negative controls

SCORES = {  # q1's run with its scores (rank order), positives p1 = 9.0 and p2 = 6.0
    "q1": [9.0, 8.5, 8.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0, 0.5],
    "q2": [4.0, 3.0, 2.0, 1.0],
    "q3": [1.0],
}
POSITIVE_SCORES = {("q1", "p1"): 9.0, ("q1", "p2"): 6.0, ("q2", "n1"): 4.0, ("q3", "z1"): 1.0, ("q4", "x"): 0.3}


def scored(qrels=QRELS):
    """The run's rows and scores arrays, and the judgments with each positive's score."""
    rows = rows_from_ranking(RUN, QIDS, PIDS, 20)
    scores = np.full(rows.shape, -np.inf, dtype=np.float16)
    for q, s in SCORES.items():
        scores[QIDS.index(q), :len(s)] = s
    triples = [(QIDS.index(q), PIDS.index(p), s) for (q, p), s in POSITIVE_SCORES.items()]
    q, d, s = (np.array(col) for col in zip(*triples))
    return rows, scores, judged(qrels).with_scores(q, d, s, n_docs=len(PIDS))


def named(neg: Negatives) -> dict:
    return as_dict(neg)


def test_defaults_with_scores_draw_exactly_what_mining_without_them_drew():
    """The run's scores change nothing by themselves: the same draws, now with their scores."""
    rows, scores, with_scores = scored()
    plain, plain_stats = sample_negatives(rows, QIDS, judged(QRELS), n=3, seed=4, depth=10, round_=1)
    neg, stats = sample_negatives(rows, QIDS, with_scores, n=3, seed=4, depth=10, round_=1, scores=scores)
    assert as_dict(neg) == as_dict(plain) and stats == plain_stats
    for i, (q, p) in enumerate(zip(neg.queries, neg.positives)):
        run = RUN[QIDS[q]]
        got = neg.scores[neg.offsets[i]:neg.offsets[i + 1]].tolist()
        assert got == [SCORES[QIDS[q]][run.index(PIDS[d])] for d in neg.negatives[neg.offsets[i]:neg.offsets[i + 1]]]
        assert neg.positive_scores[i] == POSITIVE_SCORES[(QIDS[q], PIDS[p])]
    mined, mined_stats = mine(rows, QIDS, with_scores, n=3, seed=4, depth=10, round_=1, scores=scores)
    assert as_dict(mined) == as_dict(plain) and "controls" not in mined_stats


def test_rank_window_draws_only_from_its_positions():
    rows, scores, with_scores = scored()
    for window in [(3, 10), (5, 8), (0, 10)]:
        pairs, stats = sample(n=10, seed=1, depth=10, window=window)
        allowed = {q: set(RUN[q][window[0]:window[1]]) for q in RUN}
        for (qid, pos), negs in pairs.items():
            assert set(negs) <= allowed[qid] and not set(negs) & {p for p, r in QRELS[qid].items() if r > 0}
        # Every unjudged candidate inside the window is taken when n exceeds them.
        assert sorted(pairs[("q1", "p1")]) == sorted(set(RUN["q1"][window[0]:window[1]]) - {"p1", "p2"})
        # The diagnostics still describe the whole top-depth.
        assert stats["positives_in_topk"] == 4
    assert sample(n=3, seed=2, depth=10, window=(0, 10)) == sample(n=3, seed=2, depth=10)


def test_relative_margin_drops_candidates_too_close_to_the_pair_positive():
    rows, scores, with_scores = scored()
    # m = 0.5: p1 (9.0) keeps scores <= 4.5, p2 (6.0) keeps <= 3.0, n1 of q2 (4.0) keeps <= 2.0.
    neg, stats = sample_negatives(rows, QIDS, with_scores, n=20, seed=1, depth=10, scores=scores, relative_margin=0.5)
    pairs = as_dict(neg)
    assert sorted(pairs[("q1", "p1")]) == ["n4", "n5", "n6", "n7", "n8"]   # 4.0, 3.0, 2.0, 1.0, 0.5
    assert sorted(pairs[("q1", "p2")]) == ["n5", "n6", "n7", "n8"]
    assert sorted(pairs[("q2", "n1")]) == ["m2", "m3"]
    assert np.all(neg.scores <= np.repeat(neg.positive_scores, neg.counts()) * 0.5)
    # Candidates considered: q1 8 per pair (x2), q2 3; dropped: q1 3 + 4, q2 1.
    assert stats["margin_dropped"] == 8 and stats["margin_dropped_share"] == pytest.approx(8 / 19)
    # m = 1: only candidates scoring above 0 go; as sentence-transformers, a negative positive score
    # moves the threshold down (s - |s| m), never up.
    neg1, _ = sample_negatives(rows, QIDS, with_scores, n=20, seed=1, depth=10, scores=scores, relative_margin=1.0)
    assert as_dict(neg1) == {}
    with pytest.raises(ValueError, match="needs the run's scores"):
        sample_negatives(rows, QIDS, judged(QRELS), n=3, seed=1, depth=10, relative_margin=0.1)
    # Mining where the margin leaves nothing stops there, naming the setting (not in training).
    with pytest.raises(ValueError, match="'ance.negatives' left none of 5 .* dropped 100% of the candidates"):
        mine(rows, QIDS, with_scores, n=3, seed=1, depth=10, round_=1, scores=scores, relative_margin=1.0)


def test_relative_margin_equals_sentence_transformers_rule():
    """Keep a candidate iff score <= s - |s| * m, with s the positive's score (sentence-transformers'
    relative_margin threshold), also for negative scores."""
    rng = np.random.default_rng(0)
    qids, pids = ["a"], [f"d{i}" for i in range(50)]
    run_scores = np.sort(rng.normal(size=50))[::-1].astype(np.float16)
    rows = np.arange(50, dtype=np.int32)[None, :]
    for s, m in [(0.8, 0.05), (-0.3, 0.2), (1.5, 1.0)]:
        j = Judged.from_arrays(np.array([0]), np.array([49]), np.array([1]), pa.array(qids), pa.array(pids)) \
            .with_scores(np.array([0]), np.array([49]), np.array([s]), n_docs=50)
        neg, _ = sample_negatives(rows, qids, j, n=60, seed=0, depth=50, scores=run_scores[None, :],
                                  relative_margin=m)
        expected = {i for i in range(49) if float(run_scores[i]) <= np.float32(s) - abs(np.float32(s)) * m}
        assert set(neg.negatives.tolist()) == expected


def test_missing_positive_score_is_an_input_error():
    with pytest.raises(InputError, match="has no score for the judged pair"):
        judged(QRELS).with_scores(np.array([0]), np.array([PIDS.index("p1")]), np.array([1.0]), n_docs=len(PIDS),
                                  source="positives.parquet")


def test_keep_takes_the_first_unflagged_of_each_pair():
    neg = Negatives(np.array([0, 1, 2]), np.array([5, 6, 7]), np.array([0, 4, 6, 7]), np.array([10, 11, 12, 13, 20, 21, 30]),
                    np.arange(7, dtype=np.float32), np.array([1.0, 2.0, 3.0], dtype=np.float32))
    kept = neg.keep(np.array([True, False, True, True, False, False, True]), limit=2)
    assert kept.queries.tolist() == [0, 2] and kept.offsets.tolist() == [0, 2, 3]
    assert kept.negatives.tolist() == [10, 12, 30] and kept.scores.tolist() == [0.0, 2.0, 6.0]
    assert kept.positive_scores.tolist() == [1.0, 3.0]


class FakeCrossEncoder:
    """Relevance 1.0 for the (query, document) pairs listed, 0 for the others; records its calls."""

    def __init__(self, relevant):
        self.relevant = {(QIDS.index(q), PIDS.index(d)) for q, d in relevant}
        self.calls = []

    def __call__(self, q, d):
        self.calls.append(len(q))
        return np.array([1.0 if (a, b) in self.relevant else 0.0 for a, b in zip(q.tolist(), d.tolist())])


def test_cross_encoder_denoise_keeps_the_first_unflagged_in_draw_order():
    from anceflow.negatives import CrossEncoderFilter

    rows, scores, with_scores = scored()
    fake = FakeCrossEncoder([("q1", "n1"), ("q1", "n2"), ("q2", "m1")])
    # What the cross-encoder sees: 2 x 3 = 6 candidates per pair, in the seeded order.
    drawn, _ = sample_negatives(rows, QIDS, with_scores, n=3, seed=3, depth=10, scores=scores, draw=6)
    neg, stats = mine(rows, QIDS, with_scores, n=3, seed=3, depth=10, round_=0, scores=scores,
                      cross_encoder=CrossEncoderFilter(fake, threshold=0.5, mode="denoise", oversample=2.0))
    expected = {k: [d for d in v if (k[0], d) not in {("q1", "n1"), ("q1", "n2"), ("q2", "m1")}][:3]
                for k, v in as_dict(drawn).items()}
    assert as_dict(neg) == expected
    info = stats["cross_encoder"]
    flagged = sum((k[0], d) in {("q1", "n1"), ("q1", "n2"), ("q2", "m1")} for k, v in as_dict(drawn).items() for d in v)
    assert info["candidates"] == 6 + 6 + 3 and info["flagged"] == flagged and info["dropped"] == flagged
    # Both positives of q1 share its pool: each (query, document) is scored once.
    assert fake.calls == [len({(k[0], d) for k, v in as_dict(drawn).items() for d in v})] == [info["pairs_scored"]]
    assert stats["pairs_short"] == 1  # q2 has 3 candidates, one flagged
    assert stats["examples"] == 3 and stats["score_gap"]["negatives"] == 8


def test_cross_encoder_audit_mode_changes_no_draw():
    from anceflow.negatives import CrossEncoderFilter

    rows, scores, with_scores = scored()
    fake = FakeCrossEncoder([("q1", "n1"), ("q2", "m1")])
    plain, _ = mine(rows, QIDS, with_scores, n=3, seed=3, depth=10, round_=1, scores=scores)
    neg, stats = mine(rows, QIDS, with_scores, n=3, seed=3, depth=10, round_=1, scores=scores,
                      cross_encoder=CrossEncoderFilter(fake, threshold=0.5, mode="audit"))
    assert as_dict(neg) == as_dict(plain)
    flat = [(k[0], d) for k, v in as_dict(plain).items() for d in v]
    assert stats["cross_encoder"]["flagged_share"] == pytest.approx(
        sum(p in {("q1", "n1"), ("q2", "m1")} for p in flat) / len(flat))


def test_score_gap_statistics():
    from anceflow.negatives import score_gap

    neg = Negatives(np.array([0, 1]), np.array([5, 6]), np.array([0, 3, 5]), np.array([1, 2, 3, 4, 5]),
                    np.array([1.0, 2.0, 5.0, 0.0, 1.0], dtype=np.float32), np.array([4.0, 2.0], dtype=np.float32))
    gap = score_gap(neg)
    assert gap["negatives"] == 5 and gap["median"] == 2.0 and gap["min"] == -1.0 and gap["max"] == 3.0
    assert gap["above_positive_share"] == pytest.approx(1 / 5) and gap["mean"] == pytest.approx(7 / 5)
    assert sum(gap["histogram"]["counts"]) == 5
    assert score_gap(Negatives(neg.queries, neg.positives, neg.offsets, neg.negatives)) is None


def test_make_negatives_with_scores_and_margin(tmp_path):
    """Files as the workflow writes them: rows, float16 scores, the positives' scores parquet."""
    import pandas as pd

    from anceflow.runs import save_rows

    pd.DataFrame({"pid": PIDS, "text": PIDS}).to_parquet(tmp_path / "collection.parquet")
    pd.DataFrame({"qid": QIDS, "text": QIDS}).to_parquet(tmp_path / "queries.parquet")
    pd.DataFrame([(q, p, r) for q, d in QRELS.items() for p, r in d.items()],
                 columns=["qid", "pid", "rel"]).to_parquet(tmp_path / "qrels.parquet")
    rows, scores, _ = scored()
    save_rows(tmp_path / "run.npy", rows[:, :10])
    np.save(tmp_path / "scores.npy", scores[:, :10])
    pd.DataFrame({"query": [QIDS.index(q) for q, _ in POSITIVE_SCORES], "doc": [PIDS.index(p) for _, p in POSITIVE_SCORES],
                  "score": list(POSITIVE_SCORES.values())}).to_parquet(tmp_path / "positives.parquet")
    files = {k: tmp_path / f"{k}.parquet" for k in ("queries", "collection", "qrels")}
    plain = make_negatives(tmp_path / "run.npy", out=tmp_path / "a.parquet", n=3, seed=2, depth=10, round_=1, **files)
    with_scores = make_negatives(tmp_path / "run.npy", out=tmp_path / "b.parquet", n=3, seed=2, depth=10, round_=1,
                                 scores=tmp_path / "scores.npy", positives=tmp_path / "positives.parquet", **files)
    assert pd.read_parquet(tmp_path / "a.parquet").equals(pd.read_parquet(tmp_path / "b.parquet"))
    assert "score_gap" not in plain and with_scores["score_gap"]["negatives"] == 3 + 3 + 3
    margin = make_negatives(tmp_path / "run.npy", out=tmp_path / "c.parquet", n=3, seed=2, depth=10, round_=1,
                            scores=tmp_path / "scores.npy", positives=tmp_path / "positives.parquet",
                            relative_margin=0.5, window=[1, 10], **files)
    assert margin["controls"] == {"rank_window": [1, 10], "relative_margin": 0.5, "cross_encoder": None}
    assert margin["score_gap"]["above_positive_share"] == 0.0 and margin["score_gap"]["relative_median"] >= 0.5
    np.save(tmp_path / "short.npy", scores[:3, :10])
    with pytest.raises(InputError, match="has shape"):
        make_negatives(tmp_path / "run.npy", out=tmp_path / "d.parquet", n=3, seed=2, depth=10, round_=1,
                       scores=tmp_path / "short.npy", positives=tmp_path / "positives.parquet", **files)
