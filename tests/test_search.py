"""anceflow.search: exact search over fp16 shards (torch, faiss-gpu), the CPU guard, the search job."""

import json
import re
import subprocess
import sys
import textwrap

import faiss
import numpy as np
import pandas as pd
import pytest
import torch

from anceflow import search as srch
from conftest import REPO
from anceflow.search import FAISS_GPU_MAX_K, CpuTooSlowError, FaissGpuFlat, Split, dense_runs, exact_topk

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """6,000 x 48 fp16 vectors in three uneven shards, and two query sets."""
    rng = np.random.default_rng(7)
    docs = rng.standard_normal((6000, 48)).astype(np.float16)
    folder = tmp_path_factory.mktemp("shards")
    paths = []
    for i, part in enumerate(np.split(docs, [1000, 3500])):
        np.save(folder / f"corpus.{i}.npy", part)
        paths.append(folder / f"corpus.{i}.npy")
    queries = rng.standard_normal((300, 48)).astype(np.float32), rng.standard_normal((17, 48)).astype(np.float32)
    return docs, paths, queries


def faiss_flat(docs, queries, k):
    index = faiss.IndexFlatIP(docs.shape[1])
    index.add(docs.astype(np.float32))
    return index.search(queries, k)


def assert_same_topk(ours, theirs, atol=1e-4):
    """Equal scores, and equal ids wherever a score is not within ``atol`` of its neighbour's
    (two fp32 GEMMs may order near-ties differently)."""
    (s, i), (d, j) = ours, theirs
    np.testing.assert_allclose(s, d, atol=atol)
    gap = np.minimum(np.abs(np.diff(d, axis=1, prepend=np.inf)), np.abs(np.diff(d, axis=1, append=-np.inf)))
    clear = gap > atol
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(i[clear], j[clear])


@pytest.mark.parametrize("k", [1, 10, 200, FAISS_GPU_MAX_K, 4000])
def test_exact_topk_equals_faiss_flat(corpus, k):
    """Several query sets in one pass over three fp16 shards, k up to 4000 (MaxP: 1000 x 4 chunks),
    small blocks so that results merge across many blocks and shard boundaries."""
    docs, paths, (q1, q2) = corpus
    got = exact_topk(paths, [q1, q2], [k, min(k, 25)], device=CPU, block_rows=700, query_batch=128,
                     progress=False)
    assert_same_topk(got[0], faiss_flat(docs, q1, k))
    assert_same_topk(got[1], faiss_flat(docs, q2, min(k, 25)))
    assert got[0][1].dtype == np.int64 and got[0][0].shape == (300, k)


def test_exact_topk_pads_beyond_the_corpus_and_orders_ties_by_row(tmp_path):
    docs = np.array([[1, 0], [0, 1], [1, 0], [2, 0]], dtype=np.float16)
    np.save(tmp_path / "c.npy", docs)
    (s, i), = exact_topk([tmp_path / "c.npy"], [np.array([[1.0, 0.0]], dtype=np.float32)], [6], device=CPU,
                         progress=False)
    assert i.tolist() == [[3, 0, 2, 1, -1, -1]]
    assert s[0, :4].tolist() == [2.0, 1.0, 1.0, 0.0] and np.isneginf(s[0, 4:]).all()


def test_exact_search_memory_stays_below_a_float32_copy(tmp_path):
    """600k x 256 fp16 shards (307 MB; a float32 copy would be 614 MB): the search's peak RSS rises
    by less than the float32 corpus, since blocks are streamed from the memory map."""
    script = textwrap.dedent(f"""
        import resource, numpy as np, torch
        from anceflow.search import exact_topk
        rng = np.random.default_rng(0)
        for i in range(2):
            np.save("{tmp_path}/c.%d.npy" % i, rng.standard_normal((300_000, 256), dtype=np.float32).astype(np.float16))
        queries = rng.standard_normal((64, 256)).astype(np.float32)
        torch.set_num_threads(2)
        exact_topk(["{tmp_path}/c.0.npy"], [queries[:2]], [5], device=torch.device("cpu"), progress=False)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        exact_topk(["{tmp_path}/c.0.npy", "{tmp_path}/c.1.npy"], [queries], [1000], device=torch.device("cpu"),
                   progress=False)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
    """)
    grown = int(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
                .stdout.split()[-1])
    float32_corpus = 600_000 * 256 * 4
    assert grown < 0.75 * float32_corpus, f"peak RSS grew by {grown / 2**20:.0f} MB"


class FakeGpuFaiss:
    """faiss's GPU API on the CPU: GpuIndexFlatIP is a real IndexFlatIP that records its adds."""

    def __init__(self, gpus):
        self.gpus, self.adds, self.float16 = gpus, [], []
        fake = self

        class Config:
            useFloat16 = False
            device = 0

        class Resources:
            pass

        class GpuIndexFlatIP(faiss.IndexFlatIP):
            def __init__(self, res, dim, cfg):
                super().__init__(dim)
                assert isinstance(res, Resources)
                fake.float16.append(cfg.useFloat16)
                fake.device = cfg.device  # SWIG objects take no new attributes: the last one built

            def add(self, x):
                assert self.ntotal == 0, "a sub-index gets one add (no reallocation)"
                fake.adds.append((fake.device, len(x)))
                super().add(x)

        self.Config, self.Resources, self.GpuIndexFlatIP = Config, Resources, GpuIndexFlatIP

    def install(self, monkeypatch):
        monkeypatch.setattr(faiss, "StandardGpuResources", self.Resources, raising=False)
        monkeypatch.setattr(faiss, "GpuIndexFlatConfig", self.Config, raising=False)
        monkeypatch.setattr(faiss, "GpuIndexFlatIP", self.GpuIndexFlatIP, raising=False)
        monkeypatch.setattr(faiss, "get_num_gpus", lambda: self.gpus)


def test_faiss_gpu_flat_sub_indexes_one_add_each_spread_over_gpus(corpus, monkeypatch):
    docs, paths, (q1, _) = corpus
    fake = FakeGpuFaiss(gpus=2)
    fake.install(monkeypatch)
    flat = FaissGpuFlat(paths, sub_rows=1000, progress=False)
    # Sub-indexes of at most 1,000 rows, never across a shard boundary; GPU 0 holds the first half.
    assert [n for _, n in fake.adds] == [1000, 1000, 1000, 500, 1000, 1000, 500]
    assert [g for g, _ in fake.adds] == [0, 0, 0, 1, 1, 1, 1] and all(fake.float16)  # rows 0-2999 on GPU 0
    assert flat.ntotal == 6000
    assert_same_topk(flat.search(q1, 50), faiss_flat(docs, q1, 50))
    with pytest.raises(ValueError, match="at most 2048"):
        flat.search(q1, 3000)


def write_search_inputs(folder, n_rows, splits, chunks=1):
    """Collection, corpus rows (``chunks`` rows a document) and each split's vectors and query rows."""
    docs = np.arange(n_rows) // chunks
    pd.DataFrame({"pid": [f"d{i}" for i in range(n_rows // chunks)], "text": "x"}).to_parquet(
        folder / "collection.parquet")
    pd.DataFrame({"row": range(n_rows), "doc": docs, "chunk": np.arange(n_rows) % chunks,
                  "pid": [f"d{d}" for d in docs]}).to_parquet(folder / "rows.parquet")
    for name, vectors in splits.items():
        np.save(folder / f"{name}.npy", vectors)
        pd.DataFrame({"row": range(len(vectors)), "qid": [f"{name}{i}" for i in range(len(vectors))]}).to_parquet(
            folder / f"{name}.rows.parquet")


def test_search_job_writes_runs_and_rows(corpus, tmp_path):
    """One job: a TREC run for an evaluation split and int32 collection rows for the training split."""
    docs, paths, (q1, q2) = corpus
    write_search_inputs(tmp_path, len(docs), {"dev": q2, "train": q1})
    splits = [Split("dev", tmp_path / "dev.npy", tmp_path / "dev.rows.parquet", 30, tmp_path / "dev.trec"),
              Split("train", tmp_path / "train.npy", tmp_path / "train.rows.parquet", 20, tmp_path / "train.rows.npy")]
    stats = dense_runs(splits, shards=paths, corpus_rows=tmp_path / "rows.parquet",
                       collection=tmp_path / "collection.parquet", tag="round-0", progress=False)
    assert stats["how"] == "torch on cpu"
    rows = np.load(tmp_path / "train.rows.npy")
    assert rows.dtype == np.int32 and rows.shape == (300, 20)
    np.testing.assert_array_equal(rows[:, :5], faiss_flat(docs, q1, 5)[1])
    lines = (tmp_path / "dev.trec").read_text().splitlines()
    assert len(lines) == 17 * 30
    first = lines[0].split()
    assert first[:4] == ["dev0", "Q0", f"d{faiss_flat(docs, q2[:1], 1)[1][0, 0]}", "1"] and first[5] == "round-0"


def test_cpu_guard_refuses_hours_of_exact_search_unless_asked(corpus, tmp_path, monkeypatch):
    docs, paths, (q1, _) = corpus
    write_search_inputs(tmp_path, len(docs), {"train": q1})
    split = [Split("train", tmp_path / "train.npy", tmp_path / "train.rows.parquet", 10, tmp_path / "t.rows.npy")]
    kw = dict(shards=paths, corpus_rows=tmp_path / "rows.parquet", collection=tmp_path / "collection.parquet",
              tag="x", progress=False)
    with pytest.raises(CpuTooSlowError, match=r"exact search of 300 queries over 6,000 x 48 vectors on \d+ CPU "
                                              r"threads: about 0.0 h, over index.max_cpu_hours \(1e-09\)"):
        dense_runs(split, max_cpu_hours=1e-9, **kw)
    assert not (tmp_path / "t.rows.npy").exists()
    dense_runs(split, use_gpu=False, max_cpu_hours=1e-9, **kw)  # insisting on the CPU runs it
    assert (tmp_path / "t.rows.npy").exists()
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="use_gpu is true but torch sees no GPU"):
            dense_runs(split, use_gpu=True, **kw)
    # MS MARCO passage's mining search on a 16-core node: days, not hours.
    assert srch.cpu_estimate_hours(502_939, 8_841_823, 768, 16) > 4


def test_gpu_job_uses_faiss_gpu_up_to_2048_and_torch_beyond(corpus, tmp_path, monkeypatch):
    """The dispatch on a GPU node with faiss-gpu: k <= 2048 through faiss-gpu, larger k through torch."""
    docs, paths, (q1, q2) = corpus
    write_search_inputs(tmp_path, len(docs), {"dev": q2, "train": q1}, chunks=3)
    calls = []

    class Flat:
        def __init__(self, shards, progress):
            calls.append("faiss-gpu build")

        def search(self, queries, k):
            calls.append(("faiss-gpu", k))
            return faiss_flat(docs, queries, k)

    def torch_topk(shards, queries, ks, device, progress):
        calls.append(("torch", tuple(ks)))
        return exact_topk(shards, queries, ks, device=CPU, progress=False)

    monkeypatch.setattr(srch, "pick_device", lambda use_gpu: torch.device("cuda"))
    monkeypatch.setattr(srch, "gpu_available", lambda: True)
    monkeypatch.setattr(srch, "FaissGpuFlat", Flat)
    monkeypatch.setattr(srch, "exact_topk", torch_topk)
    splits = [Split("dev", tmp_path / "dev.npy", tmp_path / "dev.rows.parquet", 1000, tmp_path / "dev.trec"),
              Split("train", tmp_path / "train.npy", tmp_path / "train.rows.parquet", 200, tmp_path / "t.rows.npy")]
    stats = dense_runs(splits, shards=paths, corpus_rows=tmp_path / "rows.parquet", chunks=3,
                       collection=tmp_path / "collection.parquet", tag="x", progress=False)
    # MaxP-style: 1000 x 3 = 3000 rows for dev (> 2048: torch), 200 x 3 = 600 for train (faiss-gpu).
    assert calls == ["faiss-gpu build", ("faiss-gpu", 600), ("torch", (3000,))]
    assert stats["how"] == "faiss-gpu (float16) and torch"


# --------------------------------------------------------------------------- the id self-check

def self_check_corpus(folder, *, similarity="cosine", chunks=1, n_docs=1500, dim=32, duplicates=0, seed=3):
    """fp16 corpus shards (3, uneven), probes written as the encoding jobs write them, and the pid
    tables. ``dot``: correlated vectors of very unequal length, so that for most rows another
    vector outscores the row's own; ``duplicates``: that many rows of document 0 copied (exactly)."""
    from anceflow.encode import probe_rows, shard_bounds, write_probe

    rng = np.random.default_rng(seed)
    n_rows = n_docs * chunks
    if similarity == "cosine":
        vectors = rng.standard_normal((n_rows, dim))
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    else:
        vectors = rng.standard_normal(dim) + 0.6 * rng.standard_normal((n_rows, dim))
        vectors *= rng.lognormal(0, 0.6, (n_rows, 1)) / np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors = vectors.astype(np.float16)
    if duplicates:  # documents 1.. copy document 0's first row (e.g. empty texts)
        vectors[chunks: chunks * (duplicates + 1): chunks] = vectors[0]
    write_search_inputs(folder, n_rows, {"dev": rng.standard_normal((5, dim)).astype(np.float32)}, chunks=chunks)
    (folder / "rows.parquet").rename(folder / "corpus.rows.parquet")
    shards, probes = [], []
    for i in range(3):
        start, end = shard_bounds(n_rows, 3, i)
        shards.append(folder / f"corpus.{i}.npy")
        np.save(shards[-1], vectors[start:end])
        rows = probe_rows(n_rows, 3, i, size=300)
        probes.append(folder / f"corpus.{i}.probe.npz")
        write_probe(probes[-1], folder / "corpus", rows, vectors[rows], i, 3)
    return vectors, shards, probes


def run_self_check(folder, shards, probes, chunks=1, **kw):
    split = [Split("dev", folder / "dev.npy", folder / "dev.rows.parquet", 20, folder / "dev.trec")]
    return dense_runs(split, shards=shards, probes=probes, corpus_rows=folder / "corpus.rows.parquet",
                      collection=folder / "collection.parquet", tag="round-1", chunks=chunks,
                      self_check_out=folder / "self_check.json", progress=False, **kw)


def scramble(path, seed=0):
    vectors = np.load(path)
    np.save(path, vectors[np.random.default_rng(seed).permutation(len(vectors))])


@pytest.mark.parametrize("chunks", [1, 3])
@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_self_check_passes_and_catches_a_scrambled_shard(tmp_path, similarity, chunks):
    """FirstP and MaxP (a chunk queried with itself comes back as its document), cosine and dot
    (where most rows are outscored by a longer vector): all probes hit; one shard's rows in another
    order fail the job before any run is written, naming the checkpoint, counts and examples."""
    vectors, shards, probes = self_check_corpus(tmp_path, similarity=similarity, chunks=chunks)
    stats = run_self_check(tmp_path, shards, probes, chunks=chunks)
    check = stats["self_check"]
    assert check["status"] == "ok" and check["hits"] == check["probes"] == 300, check
    assert json.loads((tmp_path / "self_check.json").read_text())["hits"] == 300
    if similarity == "dot":  # the own vector is not the nearest for most rows, and that is fine
        assert check["at_rank_1"] < 150 and check["below_rank_1"] + check["beyond_list"] > 150
    else:
        assert check["at_rank_1"] == 300
    (tmp_path / "dev.trec").unlink()

    scramble(shards[1])
    with pytest.raises(srch.SelfCheckError) as err:
        run_self_check(tmp_path, shards, probes, chunks=chunks)
    message = str(err.value)
    assert "id self-check of checkpoint round-1 (torch on cpu)" in message
    assert re.search(r"shard 1: [0-9] of 100", message) and "shard 0: 100 of 100" in message
    assert "Examples (row, expected pid, got pid at rank 1): (" in message and "out of order" in message
    assert re.search(r"\b(9[0-9]|100) rows hold another vector or pid than encoding stored", message)
    assert not (tmp_path / "dev.trec").exists()


def test_self_check_catches_shards_out_of_order_and_a_wrong_pid_table(tmp_path):
    vectors, shards, probes = self_check_corpus(tmp_path)
    with pytest.raises(srch.SelfCheckError, match=r"stored at their row \(33\.3%"):
        run_self_check(tmp_path, [shards[0], shards[2], shards[1]], probes)
    collection = pd.read_parquet(tmp_path / "collection.parquet")
    collection.iloc[::-1].to_parquet(tmp_path / "collection.parquet")  # e.g. prepared again, in another order
    with pytest.raises(srch.SelfCheckError, match=r"stored at their row \(0\.0%"):
        run_self_check(tmp_path, shards, probes)


def test_self_check_counts_exact_duplicates_as_hits(tmp_path):
    """40 documents with the same vector as document 0 (more than the list's 10): each of them,
    queried, ties with the others; still its own."""
    from anceflow.encode import write_probe

    vectors, shards, probes = self_check_corpus(tmp_path, duplicates=40)
    write_probe(probes[0], tmp_path / "corpus", np.arange(41), vectors[:41], 0, 3)  # probe exactly those rows
    check = run_self_check(tmp_path, shards, probes[:1])["self_check"]
    assert check["status"] == "ok" and check["hits"] == check["probes"] == 41
    assert check["beyond_list"] > 0 and check["at_rank_1"] == 1  # ties order by row: document 0 first
    scramble(shards[0])
    with pytest.raises(srch.SelfCheckError):
        run_self_check(tmp_path, shards, probes[:1])


def test_self_check_catches_a_collapsed_model_s_shard_out_of_order(tmp_path):
    """A model whose vectors all but coincide (a random or collapsed one: cosines above 0.99999,
    scores equal to float precision) ranks by noise, so scores cannot tell its rows apart; the
    rows themselves can: every probe must be stored, exactly, at its own row."""
    vectors, shards, probes = self_check_corpus(tmp_path, similarity="dot", n_docs=600)
    rng = np.random.default_rng(1)
    base = rng.standard_normal(32).astype(np.float16)
    collapsed = np.repeat(base[None], 600, axis=0)
    collapsed[:, 0] += rng.integers(-3, 4, 600).astype(np.float16) * np.float16(2.0 ** -10)  # last bits only
    for i, path in enumerate(shards):
        np.save(path, collapsed[200 * i:200 * (i + 1)])
        with np.load(probes[i]) as z:
            rows = z["rows"]
        from anceflow.encode import write_probe
        write_probe(probes[i], tmp_path / "corpus", rows, collapsed[rows], i, 3)
    assert run_self_check(tmp_path, shards, probes)["self_check"]["hits"] == 300
    scramble(shards[1])
    with pytest.raises(srch.SelfCheckError, match="rows hold another vector or pid than encoding stored"):
        run_self_check(tmp_path, shards, probes)


def test_self_check_catches_a_search_that_puts_other_ids_on_the_vectors(tmp_path, monkeypatch):
    """Rows intact, but the search's row numbering off by one past the first shard (a bookkeeping
    bug in the search itself): the probes' lists show it."""
    vectors, shards, probes = self_check_corpus(tmp_path)
    true_topk = srch.exact_topk

    def shifted(*args, **kw):
        return [(s, np.where(i >= 500, np.minimum(i + 1, 1499), i)) for s, i in true_topk(*args, **kw)]

    monkeypatch.setattr(srch, "exact_topk", shifted)
    with pytest.raises(srch.SelfCheckError, match=r"0 rows hold another vector.*; 2\d\d came back from the search "
                                                  r"under another pid"):
        run_self_check(tmp_path, shards, probes)


def test_self_check_warn_writes_the_runs_and_off_skips_it(tmp_path):
    vectors, shards, probes = self_check_corpus(tmp_path)
    scramble(shards[2])
    run_self_check(tmp_path, shards, probes, self_check="warn")
    assert (tmp_path / "dev.trec").exists()
    assert json.loads((tmp_path / "self_check.json").read_text())["status"] == "fail"
    assert run_self_check(tmp_path, shards, probes, self_check="off")["self_check"]["status"] == "off"


@pytest.mark.parametrize("index_type", ["ivf_flat", "hnsw", "ivf_pq"])
def test_self_check_of_approximate_indexes(tmp_path, index_type):
    """Approximate types: a miss is not an error by itself (warned below 99%), a wrong mapping is."""
    from anceflow.index import build_index, save_index

    vectors, shards, probes = self_check_corpus(tmp_path, dim=32)
    index_path = tmp_path / "index.faiss"
    save_index(build_index(shards, index_type=index_type, nlist=16, pq_m=8, progress=False), index_path)
    check = run_self_check(tmp_path, shards, probes, index_path=index_path, nprobe=4)["self_check"]
    assert check["status"] in ("ok", "warn") and check["rate"] > 0.9 and not check["exact"], check
    scramble(shards[1])  # and the index built from it
    save_index(build_index(shards, index_type=index_type, nlist=16, pq_m=8, progress=False), index_path)
    with pytest.raises(srch.SelfCheckError, match="shard 1: [0-9] of 100"):
        run_self_check(tmp_path, shards, probes, index_path=index_path, nprobe=4)


def test_self_check_through_faiss_gpu(tmp_path, monkeypatch):
    """On a GPU node with faiss-gpu the probes go through the same float16 flat index as the splits."""
    vectors, shards, probes = self_check_corpus(tmp_path)
    FakeGpuFaiss(gpus=2).install(monkeypatch)
    monkeypatch.setattr(srch, "pick_device", lambda use_gpu: torch.device("cuda"))
    monkeypatch.setattr(srch, "gpu_available", lambda: True)
    check = run_self_check(tmp_path, shards, probes)["self_check"]
    assert check["how"] == "faiss-gpu (float16)" and check["status"] == "ok" and check["hits"] == 300
    scramble(shards[0])
    with pytest.raises(srch.SelfCheckError, match=r"shard 0: \d+ of 100"):
        run_self_check(tmp_path, shards, probes)


def test_exact_search_and_its_self_check_need_no_faiss(tmp_path):
    """The GPU machine of bench/gpu_check.py has no faiss: exact search imports and runs without it."""
    self_check_corpus(tmp_path)
    script = textwrap.dedent(f"""
        import sys
        sys.modules["faiss"] = None  # import faiss fails
        from pathlib import Path
        from anceflow.search import Split, dense_runs
        f = Path("{tmp_path}")
        stats = dense_runs([Split("dev", f / "dev.npy", f / "dev.rows.parquet", 20, f / "dev.trec")],
                           shards=[f / f"corpus.{{i}}.npy" for i in range(3)], corpus_rows=f / "corpus.rows.parquet",
                           probes=[f / f"corpus.{{i}}.probe.npz" for i in range(3)], tag="x",
                           collection=f / "collection.parquet", progress=False)
        print(stats["how"], stats["self_check"]["status"], stats["self_check"]["hits"])
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-5:] == ["torch", "on", "cpu", "ok", "300"]
