"""The dual encoder: pooling, head, similarity, and checkpoints that load without this project."""

import json

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer

from anceflow.model import EncoderSpec, load_dual_encoder, load_tokenizer


def batch(tokenizer, texts):
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    return enc["input_ids"], enc["attention_mask"]


@pytest.mark.parametrize("spec", [
    EncoderSpec("cls", "linear_layernorm", "dot", True),  # ANCE
    EncoderSpec("mean", "none", "cosine", True),          # sentence-transformers style
    EncoderSpec("cls", "linear_layernorm", "dot", False), # separate query and document encoders
])
def test_save_and_reload_gives_the_same_vectors(tiny_model, tmp_path, spec):
    model = load_dual_encoder(tiny_model, spec, seed=3).eval()
    tok = load_tokenizer(tiny_model)
    ids, mask = batch(tok, ["a short query", "a somewhat longer document about nothing at all"])
    with torch.no_grad():
        before = [model.encode(ids, mask, side) for side in ("query", "doc")]
    model.save(tmp_path / "ckpt", tok)
    again = load_dual_encoder(tmp_path / "ckpt").eval()
    assert again.spec == spec
    with torch.no_grad():
        after = [again.encode(ids, mask, side) for side in ("query", "doc")]
    for b, a in zip(before, after):
        torch.testing.assert_close(a, b)
    assert json.loads((tmp_path / "ckpt/anceflow.json").read_text())["pooling"] == spec.pooling


def test_checkpoint_loads_with_plain_transformers(tiny_model, tmp_path):
    spec = EncoderSpec("cls", "linear_layernorm", "dot", True)
    model = load_dual_encoder(tiny_model, spec, seed=1).eval()
    model.save(tmp_path / "ckpt", load_tokenizer(tiny_model))
    hf = AutoModel.from_pretrained(tmp_path / "ckpt").eval()
    tok = AutoTokenizer.from_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt/model.safetensors").exists()
    ids, mask = batch(tok, ["hello world"])
    head = load_file(str(tmp_path / "ckpt/head.safetensors"))
    with torch.no_grad():
        cls = hf(input_ids=ids, attention_mask=mask).last_hidden_state[:, 0]
        manual = torch.nn.functional.layer_norm(cls @ head["query.linear.weight"].T + head["query.linear.bias"],
                                                (cls.shape[-1],), head["query.norm.weight"], head["query.norm.bias"])
        torch.testing.assert_close(model.encode(ids, mask, "query"), manual)


def test_mean_pooling_ignores_padding_and_cosine_is_unit_norm(tiny_model):
    model = load_dual_encoder(tiny_model, EncoderSpec("mean", "none", "cosine", True)).eval()
    tok = load_tokenizer(tiny_model)
    ids, mask = batch(tok, ["one", "one two three four five six"])
    alone_ids, alone_mask = batch(tok, ["one"])
    with torch.no_grad():
        padded = model.encode(ids, mask, "doc")[0]
        alone = model.encode(alone_ids, alone_mask, "doc")[0]
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-4)
    assert torch.allclose(padded.norm(), torch.tensor(1.0), atol=1e-5)


def test_same_seed_same_head_other_seed_differs(tiny_model):
    spec = EncoderSpec("cls", "linear_layernorm", "dot", True)
    a, b, c = (load_dual_encoder(tiny_model, spec, seed=s).query_head.linear.weight for s in (5, 5, 6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_separate_encoders_are_independent(tiny_model):
    model = load_dual_encoder(tiny_model, EncoderSpec("cls", "none", "dot", False))
    assert model.query_encoder is not model.doc_encoder
    with torch.no_grad():
        model.doc_encoder.embeddings.word_embeddings.weight.add_(1.0)
    assert not torch.equal(model.query_encoder.embeddings.word_embeddings.weight,
                           model.doc_encoder.embeddings.word_embeddings.weight)


def test_bad_spec_names_the_key():
    with pytest.raises(ValueError, match="model.pooling"):
        EncoderSpec("max", "none", "dot", True)


def test_fetch_model_stores_a_hub_snapshot_that_loads_offline(tiny_model, tmp_path, monkeypatch):
    """model.name_or_path naming a hub model: fetch_model stores it on disk (from a loopback hub),
    and it then loads with the hub switched off, as on a compute node without internet."""
    from fakehub import serve

    from anceflow.model_source import fetch_model, needs_fetch

    assert needs_fetch("org/tiny") and not needs_fetch(str(tiny_model))
    assert not needs_fetch("sentence-transformers/all-MiniLM-L6-v2")  # shipped by a package
    with serve("org/tiny", tiny_model) as (url, seen):
        folder = fetch_model("org/tiny", tmp_path / "models/tiny", endpoint=url)
    assert any(r.startswith("GET /org/tiny/resolve/") and r.endswith("model.safetensors") for r in seen)
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in tiny_model.iterdir())
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    fetched, original = AutoModel.from_pretrained(folder), AutoModel.from_pretrained(tiny_model)
    for (name, a), (_, b) in zip(fetched.state_dict().items(), original.state_dict().items()):
        assert torch.equal(a, b), name


def test_fetch_model_of_an_unknown_repo_leaves_nothing(tiny_model, tmp_path):
    from fakehub import serve

    from anceflow.model_source import fetch_model

    with serve("org/tiny", tiny_model) as (url, _):
        with pytest.raises(Exception):
            fetch_model("org/other", tmp_path / "models/other", endpoint=url)
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


@pytest.mark.parametrize("spec", [
    EncoderSpec("cls", "linear_layernorm", "dot", True, 16, 48),    # ANCE
    EncoderSpec("mean", "none", "cosine", True, 16, 48),            # all-MiniLM-L6-v2's use
    EncoderSpec("cls", "linear_layernorm", "dot", False, 16, 48),   # separate query and document encoders
], ids=["ance", "mean-cosine", "separate"])
def test_checkpoints_load_in_sentence_transformers_with_our_vectors(tiny_model, tmp_path, spec):
    """SentenceTransformer(folder) rebuilds pooling, the ANCE head (Dense + LayerNorm), Normalize and,
    with separate encoders, a Router: cosine >= 0.9999 to this project's vectors, queries and documents."""
    from sentence_transformers import SentenceTransformer

    load_dual_encoder(tiny_model, spec, seed=4).save(tmp_path / "ckpt", load_tokenizer(tiny_model))
    ours = load_dual_encoder(tmp_path / "ckpt").eval()
    tok = load_tokenizer(tmp_path / "ckpt")
    queries = ["what is a dual encoder", "ance hard negatives"]
    docs = ["A dual encoder maps queries and documents into one vector space.",
            "Negatives mined from the model's own index " * 8]  # longer than 48 tokens: truncated alike
    st = SentenceTransformer(str(tmp_path / "ckpt"), device="cpu")
    for side, texts, length, encode in (("query", queries, 16, st.encode_query), ("doc", docs, 48, st.encode_document)):
        enc = tok(texts, padding=True, truncation=True, max_length=length if not spec.shared else 48,
                  return_tensors="pt")
        with torch.no_grad():
            mine = ours.encode(enc["input_ids"], enc["attention_mask"], side).float()
        theirs = torch.from_numpy(encode(texts, convert_to_numpy=True))
        cosine = torch.nn.functional.cosine_similarity(mine, theirs)
        assert cosine.min() >= 0.9999, (side, cosine)
        if spec.similarity == "dot":
            torch.testing.assert_close(theirs, mine, rtol=1e-4, atol=1e-4)  # unnormalised, same scale
    assert st.similarity_fn_name == ("dot" if spec.similarity == "dot" else "cosine")
