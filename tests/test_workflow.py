"""The workflow end to end through Snakemake: demo run, re-run semantics, SciFact BM25, lint."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import REPO, dataset_dir

HEADER = ["system", "split", "queries", "mrr@10", "ndcg@10", "recall@100", "recall@1000", "hole@10", "mrr@100", "ranking"]


def snakemake(*args, workdir: Path | None = None, check=True, snakefile: Path | None = None) -> subprocess.CompletedProcess:
    """Run Snakemake on this repo's Snakefile (in ``workdir`` when given, else from the repo root)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile or REPO / "Snakefile"), "--cores", "2", *args]
    if workdir is not None:
        cmd += ["--directory", str(workdir)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}")
    return proc


def planned_jobs(proc: subprocess.CompletedProcess) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count} (empty when nothing is to be done)."""
    text = proc.stdout + proc.stderr
    if "Nothing to be done" in text:
        return {}
    table = text.split("Job stats:", 1)[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def tiny_demo_config(tiny_model: Path, staleness: int = 0) -> dict:
    """The demo pipeline at CI size: small demo data, a tiny BERT with ANCE's head, 2 shards, 2 rounds."""
    return {
        "dataset": {"name": "demo", "source": "demo", "demo": {"passages": 400, "train_queries": 80, "dev_queries": 40}},
        "model": {"name_or_path": str(tiny_model), "pooling": "cls", "head": "linear_layernorm", "similarity": "dot",
                  "max_query_len": 32, "max_doc_len": 64},
        "train": {"batch_size": 8, "lr": 1.0e-3, "save_every": 10},
        "warmup": {"steps": 30},
        "ance": {"rounds": 2, "steps_per_round": 20, "staleness": staleness, "topk": 50, "negatives_per_query": 10},
        "encode": {"shards": 2, "batch_size": 32},
    }


def run_demo(workdir: Path, tiny_model: Path, staleness: int, **overrides) -> Path:
    config = write_config(workdir / "tiny.yaml", {**tiny_demo_config(tiny_model, staleness), **overrides})
    snakemake("--configfile", str(config), workdir=workdir)
    return workdir


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, tiny_model):
    """The whole pipeline (BM25, zeroshot, warmup, 2 ANCE rounds, report) on demo data, run once,
    with the defaults: intermediate files are deleted once used."""
    return run_demo(tmp_path_factory.mktemp("demo"), tiny_model, staleness=0)


@pytest.fixture(scope="module")
def kept_run(tmp_path_factory, tiny_model):
    """The same pipeline with keep_intermediate: true (vectors, runs of the training split kept)."""
    return run_demo(tmp_path_factory.mktemp("kept"), tiny_model, staleness=0, keep_intermediate=True)


SYSTEM_ORDER = ["bm25", "zeroshot", "round-0", "round-1", "round-2", "bm25neg"]


def test_demo_metrics_table(demo_run):
    metrics = pd.read_csv(demo_run / "results/demo/metrics.tsv", sep="\t")
    assert list(metrics.columns) == HEADER  # the first eight as they always were; new ones after them
    assert metrics["system"].tolist() == SYSTEM_ORDER and set(metrics["split"]) == {"dev"}
    assert set(metrics["ranking"]) == {"full"}  # the demo has no candidate lists to rerank
    assert metrics["queries"].eq(40).all()
    bm25 = metrics.set_index("system").loc["bm25"]
    # The demo is built so BM25 is imperfect (queries paraphrase with synonyms) but not useless.
    assert 0.2 < bm25["mrr@10"] < 0.9
    negatives = pd.read_parquet(demo_run / "results/demo/negatives/round-0.parquet")
    assert len(negatives) >= 80 and negatives["neg_pids"].map(len).between(1, 20).all()


INTERMEDIATE = ["embeddings/*/*.npy", "index/*/*.faiss", "runs/*/train.rows.npy", "runs/*/train.scores.npy",
                "runs/*/train.positives.parquet", "runs/bm25/train.trec"]


def test_intermediate_files_are_deleted_and_results_unchanged(demo_run, kept_run):
    """By default vectors, indexes and the training split's runs are gone once used; keeping them
    (keep_intermediate) changes no result."""
    res, kept = demo_run / "results/demo", kept_run / "results/demo"
    assert not [p for pattern in INTERMEDIATE for p in res.glob(pattern)]
    assert len(list(kept.glob("embeddings/*/corpus.*.npy"))) == 5 * 2 and (kept / "runs/bm25/train.trec").exists()
    assert (res / "metrics.tsv").read_text() == (kept / "metrics.tsv").read_text()
    for n in range(3):
        assert (pd.read_parquet(res / f"negatives/round-{n}.parquet")
                .equals(pd.read_parquet(kept / f"negatives/round-{n}.parquet")))


def test_dense_path_outputs(kept_run):
    res = kept_run / "results/demo"
    for system in ("zeroshot", "round-0", "round-2"):
        shards = [np.load(res / f"embeddings/{system}/corpus.{i}.npy") for i in range(2)]
        assert sum(len(x) for x in shards) == 400 and shards[0].shape[1] == 32
        run = (res / f"runs/{system}/dev.trec").read_text().splitlines()
        assert len(run) == 40 * 400  # every query ranks the whole (small) collection
    log = pd.read_csv(res / "train/round-0.log.csv")
    assert log["step"].iloc[-1] == 30
    assert pd.read_csv(res / "train/round-2.log.csv")["step"].iloc[-1] == 20
    assert (res / "checkpoints/round-0/anceflow.json").exists() and not (res / "state/round-0").exists()


def test_rounds_mine_from_the_previous_checkpoint(kept_run):
    res = kept_run / "results/demo"
    for n in (1, 2):
        stats = json.loads((res / f"negatives/round-{n}.json").read_text())
        assert stats["round"] == n and stats["queries"] == 80
        assert 0 <= stats["overlap_with_previous"] <= 1 and stats["positive_rank_median"] >= 1
        negatives = pd.read_parquet(res / f"negatives/round-{n}.parquet")
        # Negatives come from the mining checkpoint's top-k (staleness 0: round n-1) and skip positives.
        rows = np.load(res / f"runs/round-{n - 1}/train.rows.npy")
        assert rows.shape == (80, 50) and (rows >= 0).all()
        qids = pd.read_parquet(res / "prepared/queries.train.parquet")["qid"].tolist()
        pids = pd.read_parquet(res / "prepared/collection.parquet")["pid"].to_numpy()
        top = {qid: set(pids[r]) for qid, r in zip(qids, rows)}
        qrels = pd.read_parquet(res / "prepared/qrels.train.parquet")
        positives = qrels.groupby("qid")["pid"].apply(set).to_dict()
        for row in negatives.itertuples():
            assert set(row.neg_pids) <= top[row.qid] and not set(row.neg_pids) & positives[row.qid]


def test_report(demo_run):
    report = demo_run / "results/demo/report"
    for name in ("metrics.png", "loss.png"):
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rounds = pd.read_csv(report / "rounds.tsv", sep="\t")
    assert rounds["round"].tolist() == [0, 1, 2]
    html = demo_run / "report.html"
    snakemake("--configfile", str(demo_run / "tiny.yaml"), "--report", str(html), workdir=demo_run)
    text = html.read_text(errors="replace")
    assert "metrics.png" in text and "rounds.tsv" in text


def dry_run(workdir: Path, change: dict | None = None, snakefile: Path | None = None) -> dict[str, int]:
    configs = ["--configfile", str(workdir / "tiny.yaml")]
    if change:
        configs.append(str(write_config(workdir / "change.yaml", change)))
    return planned_jobs(snakemake("-n", *configs, workdir=workdir, snakefile=snakefile))


# Each retrained round: its training and its checkpoint's corpus encoded (2 shards).
def after_training(rounds: int) -> dict[str, int]:
    return {"train": rounds, "encode_corpus": 2 * rounds}


def test_nothing_changed_nothing_to_do(demo_run):
    assert dry_run(demo_run) == {}


def test_changing_k1_reruns_bm25_retrieval_and_everything_trained_after_it(demo_run):
    # Not prepare, tokenize, bm25_index, or anything of the zeroshot system.
    jobs = dry_run(demo_run, {"bm25": {"k1": 1.2}})
    # Rounds 0 and 1 are mined with, so their search jobs also cover the training queries; the
    # bm25neg control trains on the new BM25 negatives too.
    assert jobs == {"bm25_search": 1, "bm25_search_train": 1, "bm25_negatives": 1, **after_training(3),
                    "train_control": 1, "encode_corpus": 2 * 4, "mine_negatives": 2, "encode_queries": 2 * 2 + 1 + 1,
                    "dense_search": 2, "dense_search_mining": 2, "evaluate": 1 + 4, "metrics": 1, "report": 1,
                    "audit_negatives": 3, "all": 1}
    assert not {"prepare", "tokenize_corpus", "tokenize_queries", "bm25_index", "init_model"} & set(jobs)


def test_changing_an_evaluation_setting_reruns_only_evaluation_and_report(demo_run):
    jobs = dry_run(demo_run, {"evaluate": {"relevance_level": 2}})
    assert jobs == {"evaluate": 6, "metrics": 1, "report": 1, "all": 1}


def test_changing_ance_topk_reruns_mining_of_rounds_1_up_not_warmup_or_bm25(demo_run):
    jobs = dry_run(demo_run, {"ance": {"topk": 30}})
    # The searches of the mining checkpoints (round-0, round-1) go deeper or shallower; their corpus
    # and query vectors were intermediate, so they are encoded again (kept: see the next test).
    # The bm25neg control does not mine: untouched.
    assert jobs == {"dense_search_mining": 2, "mine_negatives": 2, "train": 2, "encode_corpus": 2 * 3,
                    "encode_queries": 2 * 2 + 1, "dense_search": 1, "evaluate": 3, "metrics": 1, "report": 1,
                    "audit_negatives": 2, "all": 1}
    assert not {"bm25_search", "bm25_negatives", "train_control"} & set(jobs)


def test_one_more_round_runs_only_that_round(demo_run):
    jobs = dry_run(demo_run, {"ance": {"rounds": 3}})
    # Round 3 mines with round 2: its search now covers the training queries (round 2's corpus
    # vectors were intermediate, so they are encoded again); round 3 trains, and its checkpoint is
    # encoded, searched and evaluated on dev. The control now trains as long as three rounds.
    assert jobs == {"encode_corpus": 2 + 2 + 2, "encode_queries": 2 + 1 + 1, "dense_search_mining": 1,
                    "dense_search": 2, "mine_negatives": 1, "train": 1, "train_control": 1, "evaluate": 3,
                    "metrics": 1, "report": 1, "audit_negatives": 1, "all": 1}


def test_with_kept_intermediates_one_more_round_reuses_the_vectors(kept_run):
    jobs = dry_run(kept_run, {"ance": {"rounds": 3}})
    assert jobs == {"encode_corpus": 2 + 2, "encode_queries": 1 + 1 + 1, "dense_search_mining": 1,
                    "dense_search": 2, "mine_negatives": 1, "train": 1, "train_control": 1, "evaluate": 3,
                    "metrics": 1, "report": 1, "audit_negatives": 1, "all": 1}


def test_editing_the_training_code_reruns_training(demo_run, tmp_path):
    # A copy of the workflow whose training module differs: training jobs become stale.
    copy = tmp_path / "repo"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".venv", "results", ".snakemake", ".git", "__pycache__"))
    (copy / "anceflow/train.py").write_text((copy / "anceflow/train.py").read_text() + "\n# a change\n")
    jobs = dry_run(demo_run, snakefile=copy / "Snakefile")
    assert jobs["train"] == 3 and jobs["train_control"] == 1 and "bm25_search" not in jobs and "prepare" not in jobs


def test_staleness_one_mines_with_the_checkpoint_before_the_last(tmp_path_factory, tiny_model):
    workdir = run_demo(tmp_path_factory.mktemp("stale"), tiny_model, staleness=1, keep_intermediate=True)
    res = workdir / "results/demo"
    metrics = pd.read_csv(res / "metrics.tsv", sep="\t")
    assert metrics["system"].tolist() == SYSTEM_ORDER
    # Round 2 mined with round 0's index, so no training-split run of round 1 was ever needed.
    assert (res / "runs/round-0/train.rows.npy").exists() and not (res / "runs/round-1/train.rows.npy").exists()
    assert (res / "report/metrics.png").exists()


def test_invalid_config_names_the_key(tmp_path):
    cfg = write_config(tmp_path / "bad.yaml", {"bm25": {"k1": "high"}, "datset": {}})
    proc = snakemake("-n", "--configfile", str(cfg), workdir=tmp_path, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "config key 'bm25.k1': 'high' is not of type 'number'" in out
    assert "unknown config key 'datset'" in out


def test_bad_input_fails_prepare_with_file_and_line(tmp_path):
    src = tmp_path / "data"
    src.mkdir()
    (src / "collection.tsv").write_text("1\tfirst passage\n2\tsecond passage\n2\tduplicate\n")
    for split in ("train", "dev"):
        (src / f"queries.{split}.tsv").write_text("10\tfirst\n")
        (src / f"qrels.{split}.tsv").write_text("10 0 1 1\n")
    cfg = write_config(tmp_path / "c.yaml", {"dataset": {"name": "bad", "source": "local", "path": str(src)}})
    proc = snakemake("bm25", "--configfile", str(cfg), workdir=tmp_path, check=False)
    assert proc.returncode != 0
    assert f"{src / 'collection.tsv'}:3: duplicate pid '2'" in proc.stdout + proc.stderr
    assert not list((tmp_path / "results/bad").glob("prepared/*.parquet"))


def test_scifact_bm25_matches_anserini_regression(tmp_path):
    """Anserini's published BEIR SciFact (flat) BM25: nDCG@10 0.6789, R@100 0.9253, R@1000 0.9767."""
    cfg = write_config(tmp_path / "scifact.yaml",
                       {"dataset": {"name": "scifact", "source": "local", "path": str(dataset_dir("scifact"))}})
    snakemake("bm25", "--configfile", str(cfg), workdir=tmp_path)
    row = pd.read_csv(tmp_path / "results/scifact/eval/bm25/dev.metrics.tsv", sep="\t").iloc[0]
    assert row["queries"] == 300
    assert row["ndcg@10"] == pytest.approx(0.6789, abs=0.003)
    assert row["recall@100"] == pytest.approx(0.9253, abs=0.005)
    assert row["recall@1000"] == pytest.approx(0.9767, abs=0.005)


def test_user_config_from_repo_root_with_relative_path(tmp_path):
    """The README's example: a user YAML naming ../shared/datasets/scifact, run from the repo root."""
    dataset_dir("scifact")
    cfg = write_config(tmp_path / "my.yaml",
                       {"dataset": {"name": "scifact", "source": "local", "path": "../shared/datasets/scifact"}})
    jobs = planned_jobs(snakemake("bm25", "-n", "--configfile", str(cfg)))
    # Which jobs are pending depends on what a user already ran here; the target always is.
    assert "bm25" in jobs
    assert set(jobs) <= {"prepare", "bm25_index", "bm25_search", "bm25_search_train", "bm25_negatives", "evaluate",
                         "bm25"}


def test_lint_is_clean():
    proc = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True, text=True)
    assert "Congratulations" in proc.stdout + proc.stderr, proc.stdout + proc.stderr


def test_a_hub_model_is_fetched_once_and_later_jobs_load_it_from_disk(tmp_path, tiny_model):
    """model.name_or_path a hub id: rule fetch_model (a local rule: the submit host has internet,
    compute nodes may not) stores it under the download folder; tokenization and the zeroshot
    checkpoint read that folder, with the hub switched off for them."""
    from fakehub import serve

    config = tiny_demo_config(tiny_model)
    config["model"].update({"name_or_path": "org/tiny-bert", "hub_url": None})
    with serve("org/tiny-bert", tiny_model) as (url, seen):
        config["model"]["hub_url"] = url
        cfg = write_config(tmp_path / "hub.yaml", config)
        proc = snakemake("results/demo/checkpoints/zeroshot", "results/demo/tokens/tiny-bert.q32.d64/corpus.json",
                         "--configfile", str(cfg), workdir=tmp_path)
    assert (tmp_path / "resources/models/tiny-bert/model.safetensors").exists()
    assert "rule fetch_model" in proc.stdout + proc.stderr
    assert json.loads((tmp_path / "results/demo/checkpoints/zeroshot/anceflow.json").read_text())["pooling"] == "cls"
    # Nothing asks the hub again: a dry run with the hub gone has nothing to do.
    assert planned_jobs(snakemake("-n", "results/demo/checkpoints/zeroshot", "--configfile", str(cfg),
                                  workdir=tmp_path)) == {}


def test_pyserini_faiss_searcher_opens_the_export_and_gives_our_top_10(kept_run):
    """Target export: the last round's index as Pyserini's FaissSearcher expects (index + docid);
    searched with our query vectors it returns our run's top-10."""
    from anceflow.java import import_pyserini

    snakemake("export", "--configfile", str(kept_run / "tiny.yaml"), workdir=kept_run)
    res = kept_run / "results/demo"
    folder = res / "export/round-2/pyserini"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == ["docid", "index"]
    import_pyserini()
    from pyserini.search.faiss import FaissSearcher

    searcher = FaissSearcher(str(folder), None)
    qids = pd.read_parquet(res / "prepared/queries.dev.parquet")["qid"].tolist()
    vectors = np.load(res / "embeddings/round-2/queries.dev.npy")
    hits = searcher.batch_search(vectors, qids, k=10)
    ours = {}
    for line in (res / "runs/round-2/dev.trec").read_text().splitlines():
        qid, _, pid, rank, score, _ = line.split()
        if int(rank) <= 10:
            ours.setdefault(qid, []).append((pid, float(score)))
    exact = 0
    for q in qids:
        theirs = [(h.docid, float(h.score)) for h in hits[q]]
        # A tiny random model scores many passages within float noise of each other, so the
        # order may differ at a near-tie (which one wins depends on the GEMM's summation order);
        # the score at every rank must agree, and every hit clear of the cut must be in both.
        np.testing.assert_allclose([s for _, s in theirs], [s for _, s in ours[q]], rtol=1e-4, atol=1e-4)
        cut = ours[q][-1][1] + 1e-4
        assert {d for d, s in theirs if s > cut} == {d for d, s in ours[q] if s > cut}, q
        exact += [d for d, _ in theirs] == [d for d, _ in ours[q]]
    assert exact >= len(qids) // 2, exact


def test_splits_with_candidates_are_also_reranked(demo_run, tmp_path, tiny_model):
    """A local dataset with candidates.dev.tsv (here: BM25's top 30): each dense checkpoint's search
    job also scores exactly those candidates, evaluated as rows with ranking 'rerank'."""
    src = tmp_path / "data"
    shutil.copytree(demo_run / "results/demo/source", src)
    top = [line.split() for line in (demo_run / "results/demo/runs/bm25/dev.trec").read_text().splitlines()]
    (src / "candidates.dev.tsv").write_text("".join(f"{q}\t{p}\n" for q, _, p, rank, _, _ in top if int(rank) <= 30))
    config = tiny_demo_config(tiny_model)
    config.update(dataset={"name": "cand", "source": "local", "path": str(src)}, ance={"rounds": 0},
                  keep_intermediate=True)
    snakemake("--configfile", str(write_config(tmp_path / "c.yaml", config)), workdir=tmp_path)
    res = tmp_path / "results/cand"
    metrics = pd.read_csv(res / "metrics.tsv", sep="\t")
    assert list(metrics.columns) == HEADER
    assert metrics[["system", "ranking"]].values.tolist() == [
        ["bm25", "full"], ["zeroshot", "full"], ["zeroshot", "rerank"], ["round-0", "full"], ["round-0", "rerank"]]
    candidates = {}
    for q, _, p, rank, _, _ in top:
        if int(rank) <= 30:
            candidates.setdefault(q, set()).add(p)
    reranked = {}
    for line in (res / "runs/round-0/dev.rerank.trec").read_text().splitlines():
        q, _, p, rank, score, _ = line.split()
        reranked.setdefault(q, []).append((p, float(score)))
    assert {q: {p for p, _ in hits} for q, hits in reranked.items()} == candidates
    # Scores are the checkpoint's inner products, ranked descending.
    qids = pd.read_parquet(res / "prepared/queries.dev.parquet")["qid"].tolist()
    pids = pd.read_parquet(res / "prepared/collection.parquet")["pid"].tolist()
    qv = np.load(res / "embeddings/round-0/queries.dev.npy")
    dv = np.concatenate([np.load(res / f"embeddings/round-0/corpus.{i}.npy") for i in range(2)]).astype(np.float32)
    q0 = qids[0]
    expected = sorted(((p, float(qv[0] @ dv[pids.index(p)])) for p in candidates[q0]), key=lambda x: -x[1])
    assert [p for p, _ in reranked[q0]] == [p for p, _ in expected]
    assert np.allclose([s for _, s in reranked[q0]], [s for _, s in expected], atol=1e-4)
