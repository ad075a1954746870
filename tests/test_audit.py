"""The audit of mined negatives (hand-made examples with known answers), its report table and plot,
and the demo pipeline through Snakemake with a false-negative control switched on."""

import json

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from anceflow.audit import audit, audit_negatives, jaccard
from anceflow.negatives import Judged, Negatives
from anceflow.tokenize import TokenTable

CLS, SEP = 101, 102


def token_table(tmp_path, rows):
    """A tokenized corpus on disk as tokenize writes it (FirstP: one row per document)."""
    lengths = np.array([len(r) for r in rows], dtype=np.int32)
    np.save(tmp_path / "corpus.tokens.npy", np.array([t for r in rows for t in r], dtype=np.int32))
    np.save(tmp_path / "corpus.lengths.npy", lengths)
    pd.DataFrame({"row": np.arange(len(rows)), "pid": [f"d{i}" for i in range(len(rows))]}) \
        .to_parquet(tmp_path / "corpus.rows.parquet")
    return TokenTable.open(tmp_path / "corpus")


def test_jaccard_of_token_sets(tmp_path):
    table = token_table(tmp_path, [
        [CLS, 5, 6, 7, SEP],           # 0
        [CLS, 5, 6, 8, SEP],           # 1: {5,6} shared of {5,6,7,8} -> 0.5 with row 0
        [CLS, 5, 5, 5, SEP],           # 2: a set: {5}
        [CLS, 5, SEP],                 # 3: {5} -> 1.0 with row 2
        [CLS, SEP],                    # 4: empty
        [CLS, 9, SEP],                 # 5
    ])
    a, b = np.array([0, 2, 4, 0, 4, 0]), np.array([1, 3, 4, 0, 5, 5])
    special = [CLS, SEP]
    expected = [0.5, 1.0, 0.0, 1.0, 0.0, 0.0]
    assert jaccard(table, a, b, special).tolist() == expected
    assert jaccard(table, a, b, special, chunk=2).tolist() == expected  # chunked the same
    # With the special tokens counted, every pair shares two more tokens.
    assert jaccard(table, a[:1], b[:1]).tolist() == [pytest.approx(4 / 6)]


def test_audit_counts_near_duplicates_and_positives_of_other_queries(tmp_path):
    table = token_table(tmp_path, [
        [CLS, 1, 2, 3, 4, 5, SEP],      # d0: positive of q0
        [CLS, 1, 2, 3, 4, 5, 6, SEP],   # d1: J(d0) = 5/6
        [CLS, 1, 2, 7, 8, SEP],         # d2: J(d0) = 2/7
        [CLS, 10, 11, SEP],             # d3: positive of q1
        [CLS, 10, 11, 12, 13, SEP],     # d4: J(d3) = 0.5
        [CLS, 20, SEP],                 # d5: positive of q0 (a second one), J(d6) = 1
        [CLS, 20, SEP],                 # d6
    ])
    judged = Judged.from_arrays(np.array([0, 0, 1]), np.array([0, 5, 3]), np.array([1, 1, 1]), pa.array(["q0", "q1"]),
                                pa.array([f"d{i}" for i in range(7)]))
    # (q0, d0): d1 (near-dup of d0), d3 (positive of q1), d6 (identical to q0's other positive d5)
    # (q0, d5): d2, d4     (q1, d3): d4 (J 0.5 with d3), d0 (positive of q0)
    negatives = Negatives(np.array([0, 0, 1]), np.array([0, 5, 3]), np.array([0, 3, 5, 7]),
                          np.array([1, 3, 6, 2, 4, 4, 0]))
    doc_rows = np.arange(7)[:, None]
    figures = audit(negatives, judged, table, doc_rows, threshold=0.8, special=[CLS, SEP])
    assert figures["negatives"] == 7 and figures["pairs"] == 3
    assert figures["near_duplicates"] == 2 and figures["near_duplicate_share"] == pytest.approx(2 / 7)  # d1, d6
    assert figures["identical_token_sets"] == 1  # d6
    assert figures["positives_of_other_queries"] == 2  # d3 for q0, d0 for q1
    assert figures["positive_of_other_query_share"] == pytest.approx(2 / 7)
    # Per negative, the best Jaccard over its query's positives: 5/6, 0, 1, 2/7, 0, 0.5, 0.
    assert figures["jaccard_median"] == pytest.approx(2 / 7)
    lower = audit(negatives, judged, table, doc_rows, threshold=0.5, special=[CLS, SEP])
    assert lower["near_duplicates"] == 3


def test_audit_negatives_from_the_workflow_files(tmp_path):
    """Real tokenization (MiniLM's tokenizer) of a small collection: the same text twice is a
    near-duplicate, and the tokenizer's special tokens are left out."""
    from anceflow.model_source import load_tokenizer
    from anceflow.negatives import write_negatives
    from anceflow.tokenize import tokenize_corpus

    texts = ["the cell divides in two", "the cell divides in two", "proteins fold into shapes",
             "rivers flow to the sea", "a cell and a protein"]
    pd.DataFrame({"pid": [f"d{i}" for i in range(5)], "text": texts}).to_parquet(tmp_path / "collection.parquet")
    pd.DataFrame({"qid": ["a", "b"], "text": ["cells", "rivers"]}).to_parquet(tmp_path / "queries.parquet")
    pd.DataFrame({"qid": ["a", "b"], "pid": ["d0", "d3"], "rel": [1, 1]}).to_parquet(tmp_path / "qrels.parquet")
    write_negatives(pd.DataFrame({"qid": ["a", "b"], "pos_pid": ["d0", "d3"],
                                  "neg_pids": [["d1", "d2", "d4"], ["d0", "d2"]]}), tmp_path / "neg.parquet")
    name = "sentence-transformers/all-MiniLM-L6-v2"
    tokenize_corpus(tmp_path / "collection.parquet", tmp_path / "tok/corpus", name, max_len=32, progress=False)
    figures = audit_negatives(tmp_path / "neg.parquet", tmp_path / "queries.parquet", tmp_path / "collection.parquet",
                              tmp_path / "qrels.parquet", tmp_path / "tok/corpus", threshold=0.9,
                              special=load_tokenizer(name).all_special_ids)
    assert figures["near_duplicates"] == 1 and figures["identical_token_sets"] == 1
    assert figures["positives_of_other_queries"] == 1  # d0 among b's negatives
    assert figures["near_duplicate_share"] == pytest.approx(1 / 5)


def write_round(folder, n, gap=None, flagged=None, overlap=None, near=0.1, other=0.05):
    stats = {"round": n, "overlap_with_previous": overlap}
    if gap is not None:
        stats["score_gap"] = dict(zip(["p5", "p25", "median", "p75", "p95", "above_positive_share"], gap))
    if flagged is not None:
        stats["cross_encoder"] = {"flagged_share": flagged}
    (folder / f"round-{n}.json").write_text(json.dumps(stats))
    (folder / f"round-{n}.audit.json").write_text(json.dumps(
        {"round": n, "negatives": 100, "near_duplicate_share": near, "positive_of_other_query_share": other}))
    return folder / f"round-{n}.json", folder / f"round-{n}.audit.json"


def test_audit_table_and_plot(tmp_path):
    from anceflow.report import audit_table, plot_audit

    files = [write_round(tmp_path, 0, near=0.2),
             write_round(tmp_path, 1, gap=[-0.5, 0.1, 0.4, 0.8, 1.5, 0.07], flagged=0.3, overlap=0.02),
             write_round(tmp_path, 2, gap=[-0.2, 0.2, 0.5, 0.9, 1.7, 0.04], flagged=0.25, overlap=0.1)]
    table = audit_table([s for s, _ in files], [a for _, a in files])
    assert table["round"].tolist() == [0, 1, 2]
    assert table["gap_median"].isna().tolist() == [True, False, False] and table["gap_median"].iloc[2] == 0.5
    assert table["near_duplicate_share"].tolist() == [0.2, 0.1, 0.1]
    assert table["cross_encoder_flagged_share"].iloc[1] == 0.3
    plot_audit(table, tmp_path / "audit.png")
    assert (tmp_path / "audit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_audit(table.iloc[:1], tmp_path / "only-bm25.png")  # no dense round yet: still a figure
    assert (tmp_path / "only-bm25.png").exists()


# --------------------------------------------------------------------------- end to end, one control on

WINDOW = [5, 50]


# The window run is a second tiny pipeline (~4 min on 2 cores): its tests are behind -m slow;
# the default suite checks the audit and the scores on the shared demo run.
@pytest.fixture(scope="module")
def window_run(tmp_path_factory, tiny_model):
    """The tiny demo pipeline with one false-negative control on (ance.negatives.rank_window: skip
    the top 5 of the mining run), intermediates kept to check the negatives against the run."""
    from conftest import run_demo

    return run_demo(tmp_path_factory.mktemp("window"), tiny_model, staleness=0, keep_intermediate=True,
                    **{"ance": {"rounds": 2, "steps_per_round": 20, "staleness": 0, "topk": 50,
                                "negatives_per_query": 10, "negatives": {"rank_window": WINDOW}}})


@pytest.mark.slow
def test_window_run_draws_only_from_the_window(window_run):
    res = window_run / "results/demo"
    qids = pd.read_parquet(res / "prepared/queries.train.parquet")["qid"].tolist()
    pids = pd.read_parquet(res / "prepared/collection.parquet")["pid"].tolist()
    row_of = {p: i for i, p in enumerate(pids)}
    for n in (1, 2):
        stats = json.loads((res / f"negatives/round-{n}.json").read_text())
        assert stats["controls"] == {"rank_window": WINDOW, "relative_margin": None, "cross_encoder": None}
        rows = np.load(res / f"runs/round-{n - 1}/train.rows.npy")
        scores = np.load(res / f"runs/round-{n - 1}/train.scores.npy")
        assert scores.dtype == np.float16 and scores.shape == rows.shape == (80, 50)
        assert (np.diff(scores.astype(np.float32), axis=1) <= 0).all()  # in rank order
        positives = pd.read_parquet(res / f"runs/round-{n - 1}/train.positives.parquet")
        positive = {(qids[q], pids[d]): s for q, d, s in positives.itertuples(index=False)}
        gaps = []
        for row in pd.read_parquet(res / f"negatives/round-{n}.parquet").itertuples():
            q = qids.index(row.qid)
            position = {d: i for i, d in enumerate(rows[q].tolist())}
            for neg in row.neg_pids:
                assert WINDOW[0] <= position[row_of[neg]] < WINDOW[1]
                gaps.append(positive[(row.qid, row.pos_pid)] - float(scores[q, position[row_of[neg]]]))
        assert len(gaps) == stats["score_gap"]["negatives"] > 0
        assert stats["score_gap"]["median"] == pytest.approx(float(np.median(gaps)), abs=1e-4)


def test_positive_scores_are_the_inner_products_of_the_vectors(demo_run):
    """The search job's score of each judged positive is its query vector . its passage vector."""
    res = demo_run / "results/demo"
    queries = np.load(res / "embeddings/round-0/queries.train.npy")
    corpus = np.concatenate([np.load(res / f"embeddings/round-0/corpus.{i}.npy") for i in range(2)])
    positives = pd.read_parquet(res / "runs/round-0/train.positives.parquet")
    expected = np.einsum("ij,ij->i", queries[positives["query"]], corpus[positives["doc"]])
    np.testing.assert_allclose(positives["score"], expected, rtol=1e-5, atol=1e-5)
    assert len(positives) == len(pd.read_parquet(res / "prepared/qrels.train.parquet").query("rel > 0"))


@pytest.mark.slow
def test_window_run_audit_and_report(window_run):
    res = window_run / "results/demo"
    for n in range(3):
        figures = json.loads((res / f"negatives/round-{n}.audit.json").read_text())
        negatives = pd.read_parquet(res / f"negatives/round-{n}.parquet")
        assert figures["round"] == n and figures["negatives"] == negatives["neg_pids"].map(len).sum()
        assert 0 <= figures["near_duplicate_share"] <= 1 and 0 <= figures["positive_of_other_query_share"] <= 1
    table = pd.read_csv(res / "report/audit.tsv", sep="\t")
    assert table["round"].tolist() == [0, 1, 2]
    assert table["gap_median"].isna().tolist() == [True, False, False]  # BM25 negatives have no dense scores
    assert (res / "report/audit.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from test_workflow import snakemake

    html = window_run / "report.html"
    snakemake("--configfile", str(window_run / "tiny.yaml"), "--report", str(html), workdir=window_run)
    text = html.read_text(errors="replace")
    assert "audit.png" in text and "audit.tsv" in text


@pytest.mark.slow
def test_changing_the_audit_threshold_reruns_only_the_audit(window_run):
    from test_workflow import dry_run

    assert dry_run(window_run, {"ance": {"negatives": {"rank_window": WINDOW, "near_duplicate_jaccard": 0.5}}}) \
        == {"audit_negatives": 3, "report": 1, "all": 1}


@pytest.mark.slow
def test_changing_a_control_reruns_mining_not_the_warmup(window_run):
    from test_workflow import dry_run

    # Rounds 1 and 2 are mined and trained again from the kept mining runs; round 1's new checkpoint is
    # encoded and searched (it mines round 2), round 2's evaluated. BM25, the warmup, the control: untouched.
    assert dry_run(window_run, {"ance": {"negatives": {"rank_window": [2, 50]}}}) == {
        "mine_negatives": 2, "audit_negatives": 2, "train": 2, "encode_corpus": 2 * 2, "encode_queries": 2 + 1,
        "dense_search_mining": 1, "dense_search": 1, "evaluate": 2, "metrics": 1, "compare": 1, "report": 1,
        "all": 1}


def test_demo_audit_and_score_gaps(demo_run):
    """The shared demo (no controls): every round audited, dense rounds with score gaps, in the report."""
    res = demo_run / "results/demo"
    table = pd.read_csv(res / "report/audit.tsv", sep="\t")
    assert table["round"].tolist() == [0, 1, 2]
    assert table["gap_median"].isna().tolist() == [True, False, False]
    for n in range(3):
        figures = json.loads((res / f"negatives/round-{n}.audit.json").read_text())
        assert figures["negatives"] == pd.read_parquet(res / f"negatives/round-{n}.parquet")["neg_pids"].map(len).sum()
    stats = json.loads((res / "negatives/round-1.json").read_text())
    assert "controls" not in stats and stats["score_gap"]["negatives"] == stats["examples"] * stats["mean_negatives"]
    assert stats["mined_with"] == "round-0"
