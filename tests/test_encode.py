"""Sharded corpus encoding: shards tile the rows, length sorting changes nothing, outputs match the model."""

import numpy as np
import pytest
import torch

from anceflow.encode import encode_table, pad_batch, shard_bounds
from anceflow.model import EncoderSpec, load_dual_encoder, load_tokenizer
from anceflow.tokenize import TokenTable


@pytest.fixture(scope="module")
def checkpoint(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ckpt") / "zeroshot"
    load_dual_encoder(tiny_model, EncoderSpec("mean", "none", "cosine", True), seed=0).save(
        folder, load_tokenizer(tiny_model))
    return folder


def test_shard_bounds_tile_the_rows():
    for n, shards in [(10, 3), (7, 7), (5, 8), (1000, 4)]:
        bounds = [shard_bounds(n, shards, i) for i in range(shards)]
        assert bounds[0][0] == 0 and bounds[-1][1] == n
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    with pytest.raises(ValueError):
        shard_bounds(10, 2, 2)


def test_shards_concatenate_to_the_unsharded_encoding(checkpoint, small_data, tmp_path):
    whole = tmp_path / "whole.npy"
    encode_table(checkpoint, small_data["corpus"], whole, side="doc", batch_size=16, progress=False)
    parts = []
    for i in range(3):
        out = tmp_path / f"part{i}.npy"
        stats = encode_table(checkpoint, small_data["corpus"], out, side="doc", shard=i, shards=3, batch_size=7,
                             progress=False)
        parts.append(np.load(out))
        assert stats["rows"] == len(parts[-1])
    np.testing.assert_allclose(np.concatenate(parts), np.load(whole), atol=1e-5)


def test_vectors_equal_the_model_applied_row_by_row(checkpoint, small_data, tmp_path):
    out = tmp_path / "q.npy"
    encode_table(checkpoint, small_data["train_queries"], out, side="query", batch_size=8, progress=False)
    vectors = np.load(out)
    table = TokenTable.open(small_data["train_queries"])
    model = load_dual_encoder(checkpoint).eval()
    pad = load_tokenizer(checkpoint).pad_token_id
    with torch.no_grad():
        for r in (0, 5, len(table) - 1):
            ids, mask = pad_batch(table, np.array([r]), pad)
            np.testing.assert_allclose(vectors[r], model.encode(ids, mask, "query")[0].numpy(), atol=1e-5)
    assert vectors.shape == (len(table), model.dim)


def test_float16_storage(checkpoint, small_data, tmp_path):
    out = tmp_path / "c16.npy"
    encode_table(checkpoint, small_data["corpus"], out, side="doc", dtype="float16", progress=False)
    full = tmp_path / "c32.npy"
    encode_table(checkpoint, small_data["corpus"], full, side="doc", progress=False)
    half = np.load(out)
    assert half.dtype == np.float16
    np.testing.assert_allclose(half.astype(np.float32), np.load(full), atol=2e-3)
