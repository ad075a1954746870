"""Shared fixtures: paths to the repo and to the real test collections."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"


def dataset_dir(name: str) -> Path:
    """A real collection from ../shared/datasets; CI must have it, elsewhere the test is skipped."""
    path = DATASETS / name
    if not (path / "collection.tsv").exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: CI must run with ../shared/datasets beside the repo")
        pytest.skip(f"{path} not found (the shared test collections sit beside the repo)")
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32) with all-MiniLM-L6-v2's tokenizer, saved as a
    plain Hugging Face folder: fast enough to train in tests, real enough to exercise every code path."""
    import torch
    from transformers import BertConfig, BertModel

    from anceflow.model import load_tokenizer

    folder = tmp_path_factory.mktemp("tiny-bert")
    tokenizer = load_tokenizer("sentence-transformers/all-MiniLM-L6-v2")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> dict:
    """A small demo dataset, prepared, tokenized (MiniLM's tokenizer, as the tiny model) and with
    random negatives: the inputs of encoding and training, made without Snakemake."""
    import random

    import pandas as pd

    from anceflow.negatives import write_negatives
    from anceflow.prepare import prepare_local
    from anceflow.prepare.demo import generate_demo
    from anceflow.tokenize import tokenize_corpus, tokenize_queries

    root = tmp_path_factory.mktemp("small")
    generate_demo(root / "src", seed=5, n_passages=200, n_train=40, n_dev=20)
    prepare_local(root / "src", root / "prep", ["train", "dev"], progress=False)
    name = "sentence-transformers/all-MiniLM-L6-v2"
    tokenize_corpus(root / "prep/collection.parquet", root / "tok/corpus", name, max_len=48, progress=False)
    for split in ("train", "dev"):
        tokenize_queries(root / f"prep/queries.{split}.parquet", root / f"tok/queries.{split}", name, max_len=16,
                         progress=False)
    pids = pd.read_parquet(root / "prep/collection.parquet")["pid"].tolist()
    qrels = pd.read_parquet(root / "prep/qrels.train.parquet")
    rng = random.Random(0)
    negatives = pd.DataFrame({
        "qid": qrels["qid"],
        "pos_pid": qrels["pid"],
        "neg_pids": [[p for p in rng.sample(pids, 5) if p != pos][:4] for pos in qrels["pid"]],
    })
    write_negatives(negatives, root / "negatives.parquet")
    return {"root": root, "prep": root / "prep", "corpus": root / "tok/corpus", "train_queries": root / "tok/queries.train",
            "negatives": root / "negatives.parquet"}


# --------------------------------------------------------------------------- the workflow through Snakemake

import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402

import yaml  # noqa: E402

#: metrics.tsv's columns: the first eight as they always were, new ones after them.
HEADER = ["system", "split", "queries", "mrr@10", "ndcg@10", "recall@100", "recall@1000", "hole@10", "mrr@100", "ranking"]
SYSTEM_ORDER = ["bm25", "zeroshot", "round-0", "round-1", "round-2", "bm25neg"]
#: Tests run tiny models whose jobs cost their start-up (imports, model load), not compute: the
#: Quickstart's profile for one machine gives every job one thread, so two run side by side.
LOCAL_PROFILE = ["--workflow-profile", str(REPO / "profiles/local")]


def snakemake(*args, workdir: Path | None = None, check=True, snakefile: Path | None = None) -> subprocess.CompletedProcess:
    """Run Snakemake on this repo's Snakefile (in ``workdir`` when given, else from the repo root)."""
    cmd = [sys.executable, "-m", "snakemake", "-s", str(snakefile or REPO / "Snakefile"), "--cores", "2",
           *LOCAL_PROFILE, *args]
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


def duplicate_pid_folder(folder: Path) -> Path:
    """A local dataset folder whose collection lists pid 2 twice (bad input prepare must refuse)."""
    folder.mkdir()
    (folder / "collection.tsv").write_text("1\tfirst passage\n2\tsecond passage\n2\tduplicate\n")
    for split in ("train", "dev"):
        (folder / f"queries.{split}.tsv").write_text("10\tfirst\n")
        (folder / f"qrels.{split}.tsv").write_text("10 0 1 1\n")
    return folder


def write_config(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def tiny_demo_config(tiny_model: Path, staleness: int = 0) -> dict:
    """The demo pipeline at CI size: small demo data, a tiny BERT with ANCE's head, 2 shards, 2 rounds.

    Mean pooling, not ANCE's CLS: a random tiny BERT's CLS vector is the same for every text (cosine
    1.0000 to their mean), so every document would score within float noise of every other and
    rankings would be ties; mean-pooled vectors differ (scores a top-10 apart by 0.01 to 1)."""
    return {
        "dataset": {"name": "demo", "source": "demo", "demo": {"passages": 400, "train_queries": 80, "dev_queries": 40}},
        "model": {"name_or_path": str(tiny_model), "pooling": "mean", "head": "linear_layernorm", "similarity": "dot",
                  "max_query_len": 32, "max_doc_len": 64},
        "train": {"batch_size": 8, "lr": 1.0e-3, "save_every": 10},
        "warmup": {"steps": 30},
        "ance": {"rounds": 2, "steps_per_round": 20, "staleness": staleness, "topk": 50, "negatives_per_query": 10},
        "encode": {"shards": 2, "batch_size": 32},
    }


def run_demo(workdir: Path, tiny_model: Path, staleness: int = 0, **overrides) -> Path:
    config = write_config(workdir / "tiny.yaml", {**tiny_demo_config(tiny_model, staleness), **overrides})
    snakemake("--configfile", str(config), workdir=workdir)
    return workdir


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, tiny_model) -> Path:
    """The whole pipeline (BM25, zeroshot, warmup, 2 ANCE rounds, the bm25neg control, report,
    the Pyserini export) on tiny demo data, run once for every test that reads a finished run.
    Intermediate files are kept (vectors, the training split's runs), so tests can check them;
    the default, deleting them, is checked by the slow tests in test_workflow.py. Read it, never
    change it (copy it first)."""
    return run_demo(tmp_path_factory.mktemp("demo"), tiny_model, staleness=0, keep_intermediate=True, export=True)
