"""Sharded corpus encoding: shards tile the rows, length sorting changes nothing, outputs match the model.

Exact comparisons pin precision="fp32": "auto" means bf16 on CPUs with native bf16.
"""

import numpy as np
import pytest
import torch

from anceflow.encode import autocast, cpu_has_native_bf16, encode_table, pad_batch, resolve_precision, shard_bounds
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
    encode_table(checkpoint, small_data["corpus"], whole, side="doc", batch_size=16, precision="fp32",
                 progress=False)
    parts = []
    for i in range(3):
        out = tmp_path / f"part{i}.npy"
        stats = encode_table(checkpoint, small_data["corpus"], out, side="doc", shard=i, shards=3, batch_size=7,
                             precision="fp32", progress=False)
        parts.append(np.load(out))
        assert stats["rows"] == len(parts[-1])
    np.testing.assert_allclose(np.concatenate(parts), np.load(whole), atol=1e-5)


def test_vectors_equal_the_model_applied_row_by_row(checkpoint, small_data, tmp_path):
    out = tmp_path / "q.npy"
    encode_table(checkpoint, small_data["train_queries"], out, side="query", batch_size=8, precision="fp32",
                 progress=False)
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
    encode_table(checkpoint, small_data["corpus"], out, side="doc", dtype="float16", precision="fp32",
                 progress=False)
    full = tmp_path / "c32.npy"
    encode_table(checkpoint, small_data["corpus"], full, side="doc", precision="fp32", progress=False)
    half = np.load(out)
    assert half.dtype == np.float16
    np.testing.assert_allclose(half.astype(np.float32), np.load(full), atol=2e-3)


def test_auto_precision_is_bf16_on_cpus_with_native_bf16():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_precision(cpu, "auto") == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_precision(cpu, "fp32") == "fp32"
    assert resolve_precision(cuda, "fp16") == "fp16"
    with autocast(cpu, "bf16"):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.bfloat16
    with autocast(cpu, "fp32"):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32


def test_bf16_encoding_stays_close_to_fp32(checkpoint, small_data, tmp_path):
    out = {}
    for precision in ("fp32", "bf16"):
        out[precision] = tmp_path / f"{precision}.npy"
        encode_table(checkpoint, small_data["corpus"], out[precision], side="doc", precision=precision, progress=False)
    a, b = np.load(out["fp32"]), np.load(out["bf16"])
    assert a.dtype == b.dtype == np.float32 and not np.array_equal(a, b)  # bf16 really ran
    cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    assert cosine.min() > 0.99


def test_pad_batch_matches_row_by_row_padding(small_data):
    table = TokenTable.open(small_data["corpus"])
    rows = np.array([5, 0, len(table) - 1, 5])
    ids, mask = pad_batch(table, rows, pad_id=-7)
    width = int(table.lengths[rows].max())
    assert ids.shape == mask.shape == (len(rows), width)
    for i, r in enumerate(rows):
        n = int(table.lengths[r])
        assert ids[i, :n].tolist() == table.row(r).tolist() and (ids[i, n:] == -7).all()
        assert mask[i].tolist() == [1] * n + [0] * (width - n)
    assert pad_batch(table, np.array([], dtype=np.int64), 0)[0].shape == (0, 0)
    wide, wide_mask = pad_batch(table, rows, pad_id=-7, multiple_of=8)
    assert wide.shape[1] % 8 == 0 and width <= wide.shape[1] < width + 8
    assert torch.equal(wide[:, :width], ids) and (wide[:, width:] == -7).all() and wide_mask[:, width:].sum() == 0


def test_probe_rows_are_a_seeded_share_of_each_shard():
    from anceflow.encode import probe_rows

    n, shards = 100_003, 7
    rows = [probe_rows(n, shards, i) for i in range(shards)]
    assert [len(r) for r in rows] == [143] * shards  # ceil(1000 / 7) each
    for i, r in enumerate(rows):
        start, end = shard_bounds(n, shards, i)
        assert (np.diff(r) > 0).all() and start <= r[0] and r[-1] < end
        np.testing.assert_array_equal(r, probe_rows(n, shards, i))  # the same rows for every checkpoint
    np.testing.assert_array_equal(probe_rows(10, 2, 1), np.arange(5, 10))  # a small shard: all its rows


def test_probe_holds_the_stored_vectors_and_the_tokenized_pids(checkpoint, small_data, tmp_path):
    import pandas as pd

    from anceflow.encode import probe_rows

    pids = pd.read_parquet(f"{small_data['corpus']}.rows.parquet")["pid"].to_numpy()
    for i in range(2):
        out, probe = tmp_path / f"c{i}.npy", tmp_path / f"c{i}.probe.npz"
        stats = encode_table(checkpoint, small_data["corpus"], out, side="doc", shard=i, shards=2, batch_size=7,
                             dtype="float16", probe_path=probe, progress=False)
        with np.load(probe) as z:
            rows, vectors = z["rows"], z["vectors"]
            np.testing.assert_array_equal(rows, probe_rows(len(pids), 2, i))
            assert stats["probe_rows"] == len(rows) and int(z["shard"]) == i and int(z["shards"]) == 2
            assert vectors.dtype == np.float16  # as stored, so a probe scores exactly its own row
            np.testing.assert_array_equal(vectors, np.load(out)[rows - stats["start"]])
            np.testing.assert_array_equal(z["pids"], pids[rows])
