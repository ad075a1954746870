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

from conftest import (HEADER, REPO, SYSTEM_ORDER, dataset_dir, duplicate_pid_folder, planned_jobs, run_demo, snakemake, tiny_demo_config,
                      write_config)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory, tiny_model):
    """The demo_run pipeline with the defaults: intermediate files deleted once used, no export."""
    return run_demo(tmp_path_factory.mktemp("default"), tiny_model, staleness=0)


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


@pytest.mark.slow
def test_intermediate_files_are_deleted_and_results_unchanged(default_run, demo_run):
    """By default vectors, indexes and the training split's runs are gone once used; keeping them
    (keep_intermediate) changes no result."""
    res, kept = default_run / "results/demo", demo_run / "results/demo"
    assert not [p for pattern in INTERMEDIATE for p in res.glob(pattern)]
    assert len(list(kept.glob("embeddings/*/corpus.*.npy"))) == 5 * 2 and (kept / "runs/bm25/train.trec").exists()
    assert (res / "metrics.tsv").read_text() == (kept / "metrics.tsv").read_text()
    for n in range(3):
        assert (pd.read_parquet(res / f"negatives/round-{n}.parquet")
                .equals(pd.read_parquet(kept / f"negatives/round-{n}.parquet")))


def test_dense_path_outputs(demo_run):
    res = demo_run / "results/demo"
    for system in ("zeroshot", "round-0", "round-2"):
        shards = [np.load(res / f"embeddings/{system}/corpus.{i}.npy") for i in range(2)]
        assert sum(len(x) for x in shards) == 400 and shards[0].shape[1] == 32
        run = (res / f"runs/{system}/dev.trec").read_text().splitlines()
        assert len(run) == 40 * 400  # every query ranks the whole (small) collection
    log = pd.read_csv(res / "train/round-0.log.csv")
    assert log["step"].iloc[-1] == 30
    assert pd.read_csv(res / "train/round-2.log.csv")["step"].iloc[-1] == 20
    # Global steps: each training continues where its starting checkpoint ended (log_every 10).
    global_steps = {s: pd.read_csv(res / f"train/{s}.log.csv")["global_step"].tolist()
                    for s in ("round-0", "round-1", "round-2", "bm25neg")}
    assert global_steps == {"round-0": [10, 20, 30], "round-1": [40, 50], "round-2": [60, 70],
                            "bm25neg": [40, 50, 60, 70]}
    assert sorted(p.name for p in (res / "tensorboard").iterdir()) == [
        "bm25neg", "round-0", "round-1", "round-2"]
    assert (res / "checkpoints/round-0/anceflow.json").exists() and not (res / "state/round-0").exists()


def test_rounds_mine_from_the_previous_checkpoint(demo_run):
    res = demo_run / "results/demo"
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
    # The id self-check of every dense search: all 400 rows (2 shards of 200, under 500 each), all hits.
    checks = pd.read_csv(report / "self_check.tsv", sep="\t")
    assert checks["system"].tolist() == SYSTEM_ORDER[1:]
    assert checks["status"].eq("ok").all() and checks["probes"].eq(400).all() and checks["hits"].eq(400).all()
    assert rounds["id_self_check"].tolist() == [1.0, 1.0, 1.0]
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
                    "dense_search": 2, "dense_search_mining": 2, "evaluate_bm25": 1, "evaluate": 4, "metrics": 1,
                    "compare": 1, "report": 1, "export_pyserini": 1, "audit_negatives": 3, "all": 1}
    assert not {"prepare", "tokenize_corpus", "tokenize_queries", "bm25_index", "init_model"} & set(jobs)


def test_changing_an_evaluation_setting_reruns_only_evaluation_and_report(demo_run):
    jobs = dry_run(demo_run, {"evaluate": {"relevance_level": 2}})
    assert jobs == {"evaluate_bm25": 1, "evaluate": 5, "metrics": 1, "compare": 1, "report": 1, "all": 1}


def test_changing_ance_topk_reruns_mining_of_rounds_1_up_not_warmup_or_bm25(demo_run):
    jobs = dry_run(demo_run, {"ance": {"topk": 30}})
    # The searches of the mining checkpoints (round-0, round-1) go deeper or shallower, from the
    # vectors kept (the next test: deleted ones are encoded again); rounds 1 and 2 retrain. The
    # bm25neg control does not mine: untouched.
    # Round 0's search job also writes its dev run again: evaluated again, like rounds 1 and 2.
    assert jobs == {"dense_search_mining": 2, "mine_negatives": 2, "train": 2, "encode_corpus": 2 * 2,
                    "encode_queries": 2 + 1, "dense_search": 1, "evaluate": 3, "metrics": 1, "compare": 1,
                    "report": 1, "export_pyserini": 1, "audit_negatives": 2, "all": 1}
    assert not {"bm25_search", "bm25_negatives", "train_control"} & set(jobs)


@pytest.mark.slow
def test_with_deleted_intermediates_ance_topk_encodes_the_mining_checkpoints_again(default_run):
    jobs = dry_run(default_run, {"ance": {"topk": 30}})
    # Round 0's and round 1's corpus and query vectors were deleted once used: encoded again.
    assert jobs == {"dense_search_mining": 2, "mine_negatives": 2, "train": 2, "encode_corpus": 2 * 3,
                    "encode_queries": 2 * 2 + 1, "dense_search": 1, "evaluate": 3, "metrics": 1, "compare": 1,
                    "report": 1, "audit_negatives": 2, "all": 1}


def test_with_kept_intermediates_one_more_round_reuses_the_vectors(demo_run):
    jobs = dry_run(demo_run, {"ance": {"rounds": 3}})
    # Round 3 mines with round 2 (whose kept vectors are searched for the training queries), trains,
    # and is encoded, searched, evaluated and exported; the control now trains as long as three rounds.
    assert jobs == {"encode_corpus": 2 + 2, "encode_queries": 1 + 1 + 1, "dense_search_mining": 1,
                    "dense_search": 2, "mine_negatives": 1, "train": 1, "train_control": 1, "evaluate": 3,
                    "metrics": 1, "compare": 1, "report": 1, "export_pyserini": 1, "audit_negatives": 1, "all": 1}


@pytest.mark.slow
def test_one_more_round_runs_only_that_round(default_run):
    jobs = dry_run(default_run, {"ance": {"rounds": 3}})
    # Round 3 mines with round 2: its search now covers the training queries (round 2's corpus
    # vectors were intermediate, so they are encoded again); round 3 trains, and its checkpoint is
    # encoded, searched and evaluated on dev. The control now trains as long as three rounds.
    assert jobs == {"encode_corpus": 2 + 2 + 2, "encode_queries": 2 + 1 + 1, "dense_search_mining": 1,
                    "dense_search": 2, "mine_negatives": 1, "train": 1, "train_control": 1, "evaluate": 3,
                    "metrics": 1, "compare": 1, "report": 1, "audit_negatives": 1, "all": 1}


@pytest.mark.slow
def test_export_alone_says_up_front_that_it_encodes_deleted_vectors_again(default_run):
    proc = snakemake("-n", "export", "--configfile", str(default_run / "tiny.yaml"), workdir=default_run)
    assert ("NOTE: exporting round-2 (results/demo/checkpoints/round-2) needs its corpus vectors, and 2 of 2 shards "
            "were deleted") in proc.stderr
    assert planned_jobs(proc) == {"encode_corpus": 2, "export_pyserini": 1, "export": 1}


def test_editing_the_training_code_reruns_training(demo_run, tmp_path):
    # A copy of the workflow whose training module differs: training jobs become stale.
    copy = tmp_path / "repo"
    shutil.copytree(REPO, copy, ignore=shutil.ignore_patterns(".venv", "results", ".snakemake", ".git", "__pycache__"))
    (copy / "anceflow/train.py").write_text((copy / "anceflow/train.py").read_text() + "\n# a change\n")
    jobs = dry_run(demo_run, snakefile=copy / "Snakefile")
    assert jobs["train"] == 3 and jobs["train_control"] == 1 and "bm25_search" not in jobs and "prepare" not in jobs


def test_invalid_config_names_the_key(tmp_path):
    cfg = write_config(tmp_path / "bad.yaml", {"bm25": {"k1": "high"}, "datset": {}})
    proc = snakemake("-n", "--configfile", str(cfg), workdir=tmp_path, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "config key 'bm25.k1': 'high' is not of type 'number'" in out
    assert "unknown config key 'datset'" in out


def test_bad_input_fails_prepare_with_file_and_line(tmp_path):
    src = duplicate_pid_folder(tmp_path / "data")
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
    """A user YAML naming a local folder by a relative path, run from the repo root."""
    dataset_dir("scifact")
    cfg = write_config(tmp_path / "my.yaml",
                       {"dataset": {"name": "scifact", "source": "local", "path": "../shared/datasets/scifact"}})
    jobs = planned_jobs(snakemake("bm25", "-n", "--configfile", str(cfg)))
    # Which jobs are pending depends on what a user already ran here; the target always is.
    assert "bm25" in jobs
    assert set(jobs) <= {"prepare", "bm25_index", "bm25_search", "bm25_search_train", "bm25_negatives", "evaluate", "evaluate_bm25",
                         "bm25"}


def test_readmes_own_data_examples_plan_on_a_fresh_machine(tmp_path):
    """Every YAML example of README's "Your own data" is a valid config whose BM25 target plans from
    nothing (downloads included: BEIR by name, ir_datasets), in an empty folder."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Your own data"):text.index("The `local` layout")]
    examples = re.findall(r"```yaml\n(.*?)```", section, re.S)
    assert len(examples) >= 3
    for i, example in enumerate(examples):
        cfg = tmp_path / f"my{i}.yaml"
        cfg.write_text(example)
        proc = snakemake("bm25", "-n", "--configfile", str(cfg), workdir=tmp_path / f"run{i}", check=False)
        assert proc.returncode == 0, f"README example {i + 1}:\n{example}\n{proc.stderr[-3000:]}"
        jobs = planned_jobs(proc)
        source = yaml.safe_load(example)["dataset"]["source"]
        download = {"beir": "download_beir", "ir_datasets": "download_ir_datasets"}[source]
        assert {download, "prepare", "bm25_index", "bm25_negatives", "bm25"} <= set(jobs), (i, jobs)


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
    assert json.loads((tmp_path / "results/demo/checkpoints/zeroshot/anceflow.json").read_text())["pooling"] == "mean"
    # Nothing asks the hub again: a dry run with the hub gone has nothing to do.
    assert planned_jobs(snakemake("-n", "results/demo/checkpoints/zeroshot", "--configfile", str(cfg),
                                  workdir=tmp_path)) == {}


def test_pyserini_faiss_searcher_opens_the_export_and_gives_our_top_10(demo_run):
    """export: true: the last round's index as Pyserini's FaissSearcher expects (index + docid);
    searched with our query vectors it returns our run's top-10."""
    from anceflow.java import import_pyserini

    res = demo_run / "results/demo"
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
        cut = ours[q][-1][1] + 1e-4 * max(1.0, abs(ours[q][-1][1]))  # the tolerance of the scores above
        assert {d for d, s in theirs if s > cut} == {d for d, s in ours[q] if s > cut}, q
        exact += [d for d, _ in theirs] == [d for d, _ in ours[q]]
    assert exact >= len(qids) // 2, exact


@pytest.fixture(scope="module")
def stale_rerank_run(demo_run, tmp_path_factory, tiny_model):
    """ance.staleness 1 on a local copy of the demo data with candidates.dev.tsv (BM25's top 30 of
    demo_run): round 2 mines with round 0, and each dense checkpoint also reranks the candidates."""
    workdir = tmp_path_factory.mktemp("stale-rerank")
    src = workdir / "data"
    shutil.copytree(demo_run / "results/demo/source", src)
    top = [line.split() for line in (demo_run / "results/demo/runs/bm25/dev.trec").read_text().splitlines()]
    (src / "candidates.dev.tsv").write_text("".join(f"{q}\t{p}\n" for q, _, p, rank, _, _ in top if int(rank) <= 30))
    return run_demo(workdir, tiny_model, staleness=1, keep_intermediate=True,
                    dataset={"name": "cand", "source": "local", "path": str(src)})


@pytest.mark.slow
def test_staleness_one_mines_with_the_checkpoint_before_the_last(stale_rerank_run):
    res = stale_rerank_run / "results/cand"
    metrics = pd.read_csv(res / "metrics.tsv", sep="\t")
    assert metrics.loc[metrics["ranking"] == "full", "system"].tolist() == SYSTEM_ORDER
    # Round 2 mined with round 0's index, so no training-split run of round 1 was ever needed.
    assert (res / "runs/round-0/train.rows.npy").exists() and not (res / "runs/round-1/train.rows.npy").exists()
    assert [json.loads((res / f"negatives/round-{n}.json").read_text())["round"] for n in (1, 2)] == [1, 2]
    assert (res / "report/metrics.png").exists()


@pytest.mark.slow
def test_splits_with_candidates_are_also_reranked(stale_rerank_run, demo_run):
    """A local dataset with candidates.dev.tsv (here: BM25's top 30): each dense checkpoint's search
    job also scores exactly those candidates, evaluated as rows with ranking 'rerank'."""
    res = stale_rerank_run / "results/cand"
    metrics = pd.read_csv(res / "metrics.tsv", sep="\t")
    assert list(metrics.columns) == HEADER
    assert metrics[["system", "ranking"]].values.tolist() == [
        ["bm25", "full"], *[[system, ranking] for system in SYSTEM_ORDER[1:] for ranking in ("full", "rerank")]]
    top = [line.split() for line in (demo_run / "results/demo/runs/bm25/dev.trec").read_text().splitlines()]
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


# --------------------------------------------------------------------------- script glue: no pointless retries

def fake_job(tmp_path: Path, inputs: list[Path], **params):
    """What workflow/scripts see as `snakemake`, for anceflow.workflow.script_logging."""
    from types import SimpleNamespace

    from snakemake.iocontainers import Namedlist

    return SimpleNamespace(rule="prepare", input=Namedlist([str(p) for p in inputs]), log=[str(tmp_path / "job.log")],
                           params=Namedlist(fromdict=params), wildcards=Namedlist(), threads=1,
                           resources=Namedlist(fromdict={"mem_mb": 1000, "runtime": 10, "_cores": 1}))


def run_job(job, error: BaseException | None):
    from anceflow.workflow import script_logging

    calls = []
    with script_logging(job) as log:
        calls.append(1)
        log.info("working")
        if error is not None:
            raise error
    return calls


def test_a_permanent_failure_is_not_redone_by_a_retry(tmp_path, capsys):
    """Bad input fails the job and leaves a marker; the same job with the same inputs, settings and
    code then fails at once (a retry, or a re-run before anything was fixed) without doing the
    work; a changed input runs again; an error that may pass (e.g. out of memory) leaves no marker."""
    from anceflow.errors import InputError
    from anceflow.workflow import permanent_failure_marker

    data = tmp_path / "collection.tsv"
    data.write_text("1\ta\n1\tb\n")
    job = fake_job(tmp_path, [data], source="local")
    with pytest.raises(InputError):
        run_job(job, InputError(data, "duplicate pid '1'", 2))
    marker = permanent_failure_marker(job.log[0])
    assert json.loads(marker.read_text())["kind"] == "bad input"
    with pytest.raises(SystemExit) as stop:
        run_job(job, None)  # the work would succeed, but it must not even start
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert "not run again" in err and "duplicate pid '1'" in err
    assert "duplicate pid" in Path(job.log[0]).read_text()  # the earlier traceback is in the new log
    # Another setting: runs.
    assert run_job(fake_job(tmp_path, [data], source="other"), None) == [1] and not marker.exists()
    # A fixed input after a permanent failure: runs.
    with pytest.raises(InputError):
        run_job(job, InputError(data, "duplicate pid '1'", 2))
    data.write_text("1\ta\n2\tb\n")
    assert run_job(job, None) == [1] and not marker.exists()
    # A failure that may pass on a retry: no marker, the retry runs.
    with pytest.raises(MemoryError):
        run_job(job, MemoryError())
    assert not marker.exists() and run_job(job, None) == [1]


def test_search_self_check_stops_a_scrambled_shard(demo_run, tmp_path):
    """Through Snakemake, on a copy of the shared demo run: round-2's second corpus shard with its rows in
    another order makes its search job fail, naming the checkpoint and the shard, with no run
    left; the shard restored, the same job passes."""
    work = tmp_path / "run"
    shutil.copytree(demo_run, work, ignore=shutil.ignore_patterns("locks"))
    shard = work / "results/demo/embeddings/round-2/corpus.1.npy"
    original = np.load(shard)
    np.save(shard, original[np.random.default_rng(0).permutation(len(original))])
    target = "results/demo/runs/round-2/dev.trec"
    proc = snakemake(target, "--configfile", str(work / "tiny.yaml"), workdir=work, check=False)
    assert proc.returncode != 0
    log = (work / "results/demo/logs/dense_search.round-2.log").read_text()
    assert "id self-check of checkpoint round-2" in log and "shard 0: 200 of 200" in log, log[-3000:]
    assert re.search(r"shard 1: \d of 200", log) and "Examples (row, expected pid, got pid at rank 1)" in log
    assert not (work / target).exists()
    np.save(shard, original)
    snakemake(target, "--configfile", str(work / "tiny.yaml"), workdir=work)
    check = json.loads((work / "results/demo/runs/round-2/self_check.json").read_text())
    assert check["status"] == "ok" and check["hits"] == check["probes"] == 400


# --------------------------------------------------------------------------- seeds, comparisons, compute


def test_comparison_and_compute_of_the_demo(demo_run):
    """One seed: comparison.tsv tests every trained system against bm25neg and round-0 on dev, the
    report says first whether the last round beats the control, and compute.tsv charges every job."""
    res = demo_run / "results/demo"
    comparison = pd.read_csv(res / "comparison.tsv", sep="\t")
    assert list(comparison.columns) == ["split", "metric", "system", "baseline", "seeds", "queries", "system_mean",
                                        "baseline_mean", "diff", "ci_low", "ci_high", "p_value"]
    pairs = set(zip(comparison["system"], comparison["baseline"]))
    assert pairs == {("round-0", "bm25neg"), ("round-1", "bm25neg"), ("round-2", "bm25neg"), ("round-1", "round-0"),
                     ("round-2", "round-0"), ("bm25neg", "round-0")}
    assert (comparison["seeds"] == 1).all() and (comparison["queries"] == 40).all()
    assert ((comparison["ci_low"] <= comparison["diff"]) & (comparison["diff"] <= comparison["ci_high"])).all()
    assert comparison["p_value"].between(0, 1).all()
    metrics = pd.read_csv(res / "metrics.tsv", sep="\t").set_index("system")
    row = comparison[(comparison["system"] == "round-2") & (comparison["baseline"] == "bm25neg")
                     & (comparison["metric"] == "ndcg@10")].iloc[0]
    assert row["diff"] == pytest.approx(metrics.loc["round-2", "ndcg@10"] - metrics.loc["bm25neg", "ndcg@10"], abs=1e-3)
    first = (res / "report/comparison.txt").read_text().splitlines()[0]
    assert first.startswith("ANCE's rounds vs the equal-step control: round-2 vs bm25neg (dev, ndcg@10): ")
    compute = pd.read_csv(res / "compute.tsv", sep="\t").set_index("part")
    assert compute.index.tolist() == ["shared", "round-0", "round-1", "round-2", "bm25neg", "total"]
    assert (compute.loc["round-0":"bm25neg", "jobs"] > 0).all() and compute.loc["total", "cpu_hours"] > 0
    assert (compute["gpu_hours"] == 0).all()  # no job had a GPU here
    assert compute.loc["total", "jobs"] == compute.drop("total")["jobs"].sum()
    assert (res / "report/compute.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_seeds_run_the_loop_per_seed_and_compare_over_them(tmp_path, tiny_model):
    """seeds: [7, 8]: BM25 and tokens once, everything trained per seed in seed-<s>/, metrics.tsv
    over the seeds (first eight columns as always), comparison.tsv pooled over both seeds."""
    config = tiny_demo_config(tiny_model)
    config["ance"].update(rounds=1)
    config["seeds"] = [7, 8]
    cfg = write_config(tmp_path / "seeds.yaml", config)
    proc = snakemake("--configfile", str(cfg), workdir=tmp_path)
    res = tmp_path / "results/demo"
    assert proc.returncode == 0
    for seed in (7, 8):
        per_seed = pd.read_csv(res / f"seed-{seed}/metrics.tsv", sep="\t")
        assert per_seed["system"].tolist() == ["bm25", "zeroshot", "round-0", "round-1", "bm25neg"]
        settings = json.loads((res / f"seed-{seed}/checkpoints/round-1/manifest.json").read_text())["config"]
        assert settings["seed"] == seed + 1  # round n trains with seed + n
    assert (res / "bm25/index").exists() and not (res / "checkpoints").exists()
    a, b = (pd.read_parquet(res / f"seed-{s}/negatives/round-0.parquet") for s in (7, 8))
    assert not a.equals(b)  # each seed draws its own BM25 negatives
    summary = pd.read_csv(res / "metrics.tsv", sep="\t")
    assert list(summary.columns[:10]) == HEADER and (summary["seeds"] == 2).all()
    per = [pd.read_csv(res / f"seed-{s}/metrics.tsv", sep="\t").set_index("system") for s in (7, 8)]
    row = summary.set_index("system").loc["round-1"]
    values = [p.loc["round-1", "ndcg@10"] for p in per]
    assert row["ndcg@10"] == pytest.approx(np.mean(values), abs=1e-4)
    assert row["ndcg@10_std"] == pytest.approx(np.std(values, ddof=1), abs=1e-4)
    comparison = pd.read_csv(res / "comparison.tsv", sep="\t")
    assert (comparison["seeds"] == 2).all() and (comparison["queries"] == 40).all()
    assert (res / "report/comparison.txt").read_text().startswith("ANCE's rounds vs the equal-step control: round-1")
    assert planned_jobs(snakemake("-n", "--configfile", str(cfg), workdir=tmp_path)) == {}
