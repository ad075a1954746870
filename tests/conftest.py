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
