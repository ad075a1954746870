"""The cross-encoder that denoises mined negatives: a tiny random BERT classifier, on the CPU."""

import numpy as np
import pandas as pd
import pytest

TEXTS = [f"passage {i} about {'cells' if i % 3 else 'proteins'} and {'x ' * (i % 7)}".strip() for i in range(30)]
QUERIES = ["what do cells do", "protein folding", "x"]


def tiny_classifier(folder, labels: int = 1):
    """A random 2-layer BertForSequenceClassification with MiniLM's tokenizer, saved as a folder."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from anceflow.model import load_tokenizer

    tokenizer = load_tokenizer("sentence-transformers/all-MiniLM-L6-v2")
    torch.manual_seed(labels)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, num_labels=labels)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    return tiny_classifier(tmp_path_factory.mktemp("tiny-ce"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ce-data")
    pd.DataFrame({"pid": [f"d{i}" for i in range(len(TEXTS))], "title": ["T"] * len(TEXTS), "text": TEXTS}) \
        .to_parquet(root / "collection.parquet", row_group_size=7)
    pd.DataFrame({"qid": ["a", "b", "c"], "text": QUERIES}).to_parquet(root / "queries.parquet")
    return root


def direct(folder, queries, docs):
    """The probabilities computed the plain way, one pair at a time."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    out = []
    with torch.inference_mode():
        for q, d in zip(queries, docs):
            logits = model(**tok(q, d, truncation=True, max_length=512, return_tensors="pt")).logits[0]
            out.append(torch.sigmoid(logits[0]).item() if len(logits) == 1 else torch.softmax(logits, 0)[1].item())
    return np.array(out)


def test_read_texts_gives_the_rows_asked_for_across_batches(data):
    from anceflow.crossencoder import read_texts

    rows = np.array([0, 3, 3, 8, 20, 29])
    got = {}
    for positions, texts in read_texts(data / "collection.parquet", rows, batch_rows=4):
        for p, t in zip(positions.tolist(), texts):
            got.setdefault(p, []).append(t)
    assert got == {i: [f"T {TEXTS[r]}"] for i, r in enumerate(rows.tolist())}


@pytest.mark.parametrize("labels", [1, 2])
def test_probabilities_equal_the_plain_computation(data, tmp_path, labels):
    """Batched, length-sorted, read a row group at a time: the same numbers as one pair at a time."""
    from anceflow.crossencoder import CrossEncoder

    folder = tiny_classifier(tmp_path / "m", labels)
    ce = CrossEncoder(folder, queries=data / "queries.parquet", collection=data / "collection.parquet", batch_size=4,
                      progress=False)
    q = np.array([0, 1, 2, 0, 1, 2, 0, 1])
    d = np.array([29, 3, 3, 0, 17, 8, 12, 5])
    got = ce(q, d)
    expected = direct(folder, [QUERIES[i] for i in q], [f"T {TEXTS[i]}" for i in d])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert ((got >= 0) & (got <= 1)).all() and got.std() > 0


def test_denoising_with_a_tiny_model_drops_exactly_what_it_flags(data, classifier):
    """Mining with the cross-encoder: a threshold in the middle of its scores flags some candidates;
    none of them survives, and every pair keeps n negatives when enough are left."""
    from anceflow.crossencoder import CrossEncoder
    from anceflow.negatives import CrossEncoderFilter, Judged, mine, sample_negatives

    import pyarrow as pa

    ce = CrossEncoder(classifier, queries=data / "queries.parquet", collection=data / "collection.parquet",
                      batch_size=8, progress=False)
    rows = np.array([np.roll(np.arange(30), 5 * i)[:25] for i in range(3)], dtype=np.int32)
    judged = Judged.from_arrays(np.array([0, 1, 2]), np.array([0, 1, 2]), np.ones(3, dtype=int),
                                pa.array(["a", "b", "c"]), pa.array([f"d{i}" for i in range(30)]))
    drawn, _ = sample_negatives(rows, ["a", "b", "c"], judged, n=4, seed=1, depth=25, draw=8)
    probability = ce(drawn.negative_queries(), drawn.negatives)
    threshold = float(np.median(probability))
    flagged = {(q, d) for q, d, p in zip(drawn.negative_queries().tolist(), drawn.negatives.tolist(), probability)
               if p > threshold}
    assert 0 < len(flagged) < len(probability)
    neg, stats = mine(rows, ["a", "b", "c"], judged, n=4, seed=1, depth=25, round_=0,
                      cross_encoder=CrossEncoderFilter(ce, threshold=threshold, oversample=2.0))
    kept = set(zip(neg.negative_queries().tolist(), neg.negatives.tolist()))
    assert not kept & flagged
    assert stats["cross_encoder"]["flagged"] == len(flagged)
    assert (neg.counts() <= 4).all() and stats["pairs_short"] == int((neg.counts() < 4).sum())


def test_not_a_classifier_is_refused(tmp_path, tiny_model):
    from anceflow.crossencoder import CrossEncoder
    from anceflow.model_source import cross_encoder_problem

    assert "not a sequence-classification model" in cross_encoder_problem(tiny_model)
    with pytest.raises(ValueError, match="not a sequence-classification model"):
        CrossEncoder(tiny_model, queries="q", collection="c")
    assert "no config.json" in cross_encoder_problem(tmp_path)


def test_a_cpu_run_estimated_over_the_limit_is_refused(data, classifier):
    from anceflow.crossencoder import CrossEncoder, CrossEncoderTooSlowError

    ce = CrossEncoder(classifier, queries=data / "queries.parquet", collection=data / "collection.parquet",
                      batch_size=1, max_cpu_hours=1e-9, progress=False)
    with pytest.raises(CrossEncoderTooSlowError, match="index.max_cpu_hours"):
        ce(np.zeros(20, dtype=int), np.arange(20))
    unguarded = CrossEncoder(classifier, queries=data / "queries.parquet", collection=data / "collection.parquet",
                             batch_size=1, max_cpu_hours=1e-9, use_gpu=False, progress=False)
    assert len(unguarded(np.zeros(10, dtype=int), np.arange(10))) == 10


def test_fetch_refuses_a_hub_model_that_is_not_a_cross_encoder(tmp_path, tiny_model, classifier):
    """A hub cross-encoder is fetched by rule fetch_cross_encoder on the submit host; one that is not
    a relevance classifier stops there, naming the config key."""
    from fakehub import serve
    from test_workflow import snakemake, tiny_demo_config, write_config

    config = tiny_demo_config(tiny_model)
    for repo, folder, ok in [("org/not-a-ce", tiny_model, False), ("org/tiny-ce", classifier, True)]:
        with serve(repo, folder) as (url, _):
            config["model"]["hub_url"] = url
            config["ance"]["negatives"] = {"cross_encoder": {"name_or_path": repo}}
            cfg = write_config(tmp_path / "ce.yaml", config)
            target = f"resources/cross-encoders/{repo.split('/')[1]}"
            proc = snakemake(target, "--configfile", str(cfg), workdir=tmp_path, check=False)
        out = proc.stdout + proc.stderr
        if ok:
            assert proc.returncode == 0, out[-3000:]
            assert (tmp_path / target / "config.json").exists()
        else:
            assert proc.returncode != 0
            assert "config key 'ance.negatives.cross_encoder.name_or_path'" in out
            assert "not a sequence-classification model" in out
