"""Pyserini from query text: anceflow.pyserini.query_encoder gives the workflow's query vectors, and
FaissSearcher over our export with it returns our run's top-10."""

import numpy as np
import pandas as pd
import pytest
import torch

from anceflow.encode import encode_table
from anceflow.model import EncoderSpec, load_dual_encoder, load_tokenizer

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
LONG = "what does the passage say about " + "negatives mined from the index " * 10  # past 16 tokens


def save_checkpoint(name, spec, folder, seed=4, perturb_query=False):
    model = load_dual_encoder(name, spec, seed=seed)
    if perturb_query:  # separate towers start equal; make the query tower differ from the doc tower
        with torch.no_grad():
            for p in model.query_encoder.parameters():
                p.add_(0.02 * torch.randn_like(p))
    model.save(folder, load_tokenizer(name))
    return folder


def workflow_vectors(checkpoint, small_data, side="query", precision="auto"):
    """The query split's vectors as the workflow's encode_queries job computes them."""
    out = checkpoint.parent / f"vectors.{side}.{precision}.npy"
    encode_table(checkpoint, small_data["train_queries"], out, side=side, batch_size=64, precision=precision,
                 progress=False)
    return np.load(out)


def train_texts(small_data):
    return pd.read_parquet(small_data["prep"] / "queries.train.parquet")["text"].tolist()


def test_import_needs_no_java_or_api_key_from_the_user():
    """A fresh interpreter with no JAVA_HOME, no OPENAI_API_KEY and the system's Java 17 first on
    PATH: importing anceflow.pyserini makes Pyserini's FaissSearcher importable."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "OPENAI_API_KEY")}
    code = ("import anceflow.pyserini\nfrom pyserini.search.faiss import FaissSearcher\n"
            "from pyserini.encode import QueryEncoder\n"
            "assert issubclass(anceflow.pyserini.AnceflowQueryEncoder, QueryEncoder)\nprint('imported')")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and "imported" in proc.stdout, proc.stderr[-3000:]


@pytest.mark.parametrize("spec", [
    EncoderSpec("cls", "linear_layernorm", "dot", True, 16, 48),   # ANCE's head on a BERT
    EncoderSpec("cls", "linear_layernorm", "dot", False, 16, 48),  # separate towers, each with a head
], ids=["ance-head", "separate-ance-head"])
def test_head_checkpoints_get_our_encoder_with_the_workflows_vectors(tiny_model, small_data, tmp_path, spec):
    from anceflow.pyserini import AnceflowQueryEncoder, query_encoder  # before pyserini: its Java set-up
    from pyserini.encode import AutoQueryEncoder

    ckpt = save_checkpoint(tiny_model, spec, tmp_path / "ckpt", perturb_query=not spec.shared)
    ours = workflow_vectors(ckpt, small_data)
    encoder = query_encoder(ckpt)
    assert isinstance(encoder, AnceflowQueryEncoder) and encoder.max_length == 16
    texts = train_texts(small_data)
    # The same batches in the same precision: the workflow's vectors to the last digit.
    np.testing.assert_array_equal(encoder.encode_batch(texts), ours)
    # One query at a time (FaissSearcher.search): other batch shapes, so bf16 may round differently.
    for i in (0, 7):
        np.testing.assert_allclose(encoder.encode(texts[i]), ours[i], rtol=0.02, atol=0.02)
    if not spec.shared:  # the query tower, not the document tower
        doc = workflow_vectors(ckpt, small_data, side="doc")
        assert np.abs(doc - ours).max() > 0.1
    else:  # what the issue measured: Pyserini's AutoQueryEncoder alone drops the head
        auto = AutoQueryEncoder(str(ckpt), pooling="cls").encode(texts[0])
        cosine = auto @ ours[0] / np.linalg.norm(auto) / np.linalg.norm(ours[0])
        assert cosine < 0.9


@pytest.mark.parametrize("name,spec", [
    (MINILM, EncoderSpec("mean", "none", "cosine", True, 16, 48)),  # all-MiniLM-L6-v2 as it is used
    ("tiny", EncoderSpec("cls", "none", "dot", False, 16, 48)),     # separate towers, no head
], ids=["minilm-mean-cosine", "separate-no-head"])
def test_without_a_head_in_fp32_pyserinis_auto_query_encoder_gives_our_vectors(tiny_model, small_data, tmp_path,
                                                                               name, spec):
    from anceflow.pyserini import AnceflowQueryEncoder, query_encoder  # before pyserini: its Java set-up
    from pyserini.encode import AutoQueryEncoder

    ckpt = save_checkpoint(tiny_model if name == "tiny" else name, spec, tmp_path / "ckpt",
                           perturb_query=not spec.shared)
    encoder = query_encoder(ckpt, precision="fp32")
    assert isinstance(encoder, AutoQueryEncoder) and not isinstance(encoder, AnceflowQueryEncoder)
    ours = workflow_vectors(ckpt, small_data, precision="fp32")
    texts = train_texts(small_data)
    theirs = np.stack([encoder.encode(t) for t in texts])
    np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-5)
    # A query past max_query_len is cut where the workflow cuts it (16 tokens, not the model's 512).
    tok = load_tokenizer(ckpt)
    ids = tok([LONG], truncation=True, max_length=16, return_tensors="pt")
    model = load_dual_encoder(ckpt).eval()
    with torch.no_grad():
        cut = model.encode(ids["input_ids"], ids["attention_mask"], "query")[0].numpy()
    np.testing.assert_allclose(encoder.encode(LONG), cut, rtol=1e-4, atol=1e-5)
    if not spec.shared:
        assert np.abs(workflow_vectors(ckpt, small_data, side="doc", precision="fp32") - ours).max() > 0.1
    # Where the workflow's precision is bf16, our own encoder again: its vectors, not fp32's.
    assert isinstance(query_encoder(ckpt, precision="bf16"), AnceflowQueryEncoder)


def test_a_folder_that_is_not_a_checkpoint_is_named(tiny_model):
    from anceflow.pyserini import query_encoder

    with pytest.raises(FileNotFoundError, match="not an anceflow checkpoint"):
        query_encoder(tiny_model)


# -- end to end: the workflow's export, searched from text -------------------------------------

def export_round_0(workdir, model_cfg, **overrides):
    """``snakemake results/demo/export/round-0/pyserini`` (and round 0's dev run, to compare with)
    on the tiny demo config with ``model_cfg`` changed; returns the demo's results folder."""
    from conftest import snakemake, tiny_demo_config, write_config

    config = tiny_demo_config(model_cfg["name_or_path"])
    config["model"].update(model_cfg)
    config["ance"]["rounds"] = 0
    for key, value in overrides.items():
        config[key].update(value)
    cfg = write_config(workdir / "tiny.yaml", config)
    snakemake("results/demo/export/round-0/pyserini", "results/demo/runs/round-0/dev.trec", "--configfile", str(cfg),
              workdir=workdir)
    return workdir / "results/demo"


@pytest.fixture(scope="module")
def tiny_export(demo_run):
    """Round 0 of the shared tiny demo (a tiny BERT, mean pooling + ANCE's linear_layernorm head + dot),
    exported for Pyserini: ``snakemake results/demo/export/round-0/pyserini``."""
    from conftest import snakemake

    snakemake("results/demo/export/round-0/pyserini", "--configfile", str(demo_run / "tiny.yaml"), workdir=demo_run)
    return demo_run / "results/demo"


@pytest.fixture(scope="module")
def minilm_export(tmp_path_factory):
    """The same with all-MiniLM-L6-v2 under ANCE's head: a real model's scores, few near-ties."""
    return export_round_0(tmp_path_factory.mktemp("pyserini-minilm"), {"name_or_path": MINILM},
                          train={"lr": 2.0e-5}, warmup={"steps": 10})


def our_top10(res):
    ours = {}
    for line in (res / "runs/round-0/dev.trec").read_text().splitlines():
        qid, _, pid, rank, score, _ = line.split()
        if int(rank) <= 10:
            ours.setdefault(qid, []).append((pid, float(score)))
    return ours


def assert_faiss_searcher_from_text_gives_our_top_10(res):
    from anceflow.pyserini import AnceflowQueryEncoder, query_encoder  # before pyserini: its Java set-up
    from pyserini.search.faiss import FaissSearcher

    encoder = query_encoder(res / "checkpoints/round-0")
    assert isinstance(encoder, AnceflowQueryEncoder)  # ANCE's head: Pyserini's own classes cannot apply it
    searcher = FaissSearcher(str(res / "export/round-0/pyserini"), encoder)
    queries = pd.read_parquet(res / "prepared/queries.dev.parquet")
    ours = our_top10(res)
    batch = searcher.batch_search(queries["text"].tolist(), queries["qid"].tolist(), k=10)
    exact = batch_exact = moved = 0
    for qid, text in zip(queries["qid"], queries["text"]):
        theirs = [(h.docid, float(h.score)) for h in searcher.search(text, k=10)]
        mine = ours[qid]
        # One query alone runs other matrix shapes (and padding) than the workflow's sorted batches,
        # so bf16 may round differently: scores agree rank by rank within 0.2%; a hit clear of the
        # cut is in both, except where bf16's rounding moved one score further (counted, bounded).
        tol = 2e-3 * max(abs(s) for _, s in mine) + 1e-4
        np.testing.assert_allclose([s for _, s in theirs], [s for _, s in mine], rtol=0, atol=tol)
        cut = mine[-1][1] + tol
        moved += {d for d, s in theirs if s > cut} != {d for d, s in mine if s > cut}
        exact += [d for d, _ in theirs] == [d for d, _ in mine]
        batch_exact += [h.docid for h in batch[qid]] == [d for d, _ in mine]
    print(f"identical top-10: {exact}/{len(queries)} one by one, {batch_exact}/{len(queries)} batched; "
          f"a hit clear of the cut in one only: {moved}")
    assert exact >= 0.9 * len(queries) and batch_exact >= 0.9 * len(queries), (exact, batch_exact)
    assert moved <= 0.05 * len(queries), moved


def test_faiss_searcher_from_text_gives_our_top_10(tiny_export):
    assert_faiss_searcher_from_text_gives_our_top_10(tiny_export)


@pytest.mark.slow
def test_faiss_searcher_from_text_gives_our_top_10_with_minilm_under_ances_head(minilm_export):
    assert_faiss_searcher_from_text_gives_our_top_10(minilm_export)


# -- docs/using-models.md: its snippets run --------------------------------------------------

def doc_snippets(path):
    import re

    text = path.read_text()
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def run_snippet(code, checkpoint, index):
    """Run one snippet with its ``checkpoint = ...`` / ``index = ...`` lines pointed at the demo."""
    import re

    code, n = re.subn(r'^checkpoint = "[^"]*"', f"checkpoint = {str(checkpoint)!r}", code, flags=re.M)
    assert n == 1, "every snippet names its checkpoint folder in one `checkpoint = \"...\"` line"
    code = re.sub(r'^index = "[^"]*"', f"index = {str(index)!r}", code, flags=re.M)
    namespace = {}
    exec(compile(code, "docs/using-models.md", "exec"), namespace)
    return namespace


def test_using_models_doc_snippets_run_and_agree(tiny_export):
    from conftest import REPO

    from anceflow.pyserini import query_encoder

    snippets = doc_snippets(REPO / "docs/using-models.md")
    assert len(snippets) == 2
    checkpoint, index = tiny_export / "checkpoints/round-0", tiny_export / "export/round-0/pyserini"
    ours = query_encoder(checkpoint)
    # sentence-transformers: its query vector is ours (it runs fp32, the workflow here bf16).
    st = run_snippet(snippets[0], checkpoint, index)
    mine = ours.encode("what is a dense retriever")
    q = st["q"][0]
    assert q @ mine / np.linalg.norm(q) / np.linalg.norm(mine) > 0.999
    assert st["d"].shape == (2, len(mine)) and tuple(st["scores"].shape) == (1, 2)
    # Pyserini: the hits are the exact top-10 of our query vector over the exported vectors.
    ps = run_snippet(snippets[1], checkpoint, index)
    import faiss

    flat = faiss.read_index(str(index / "index"))
    scores = flat.reconstruct_n(0, flat.ntotal) @ mine
    docids = (index / "docid").read_text().split()
    top = np.argsort(-scores, kind="stable")[:10]
    # The tiny model has near-ties: faiss's and numpy's sums may order those two either way.
    np.testing.assert_allclose([h.score for h in ps["hits"]], scores[top], rtol=1e-5)
    cut = scores[top[-1]] + 1e-5 * max(1.0, abs(scores[top[-1]]))
    assert {h.docid for h in ps["hits"] if h.score > cut} == {docids[i] for i in top if scores[i] > cut}
    assert set(ps["many"]) == {"q1", "q2"} and all(len(v) == 10 for v in ps["many"].values())
