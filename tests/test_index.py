"""anceflow.index: faiss indexes over sharded embeddings, checked against numpy brute force."""

import faiss
import numpy as np
import pytest

from anceflow import index as ix
from anceflow.errors import InputError
from anceflow.index import (INDEX_TYPES, GpuUnavailableError, aggregate_max, build_index, default_nlist,
                            default_pq_m, gpu_available, load_index, recall_at, save_index, search,
                            set_search_params)

N, DIM, N_CLUSTERS, N_QUERIES, K = 5000, 32, 40, 200, 10


@pytest.fixture(scope="module", autouse=True)
def one_faiss_thread():
    # Toy-sized work gains nothing from OpenMP, and its spinning threads slow to a crawl
    # when other processes share the 2 cores.
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


def _normalize(x):
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    """Clustered unit vectors (so IVF/HNSW/PQ have structure to exploit) and nearby queries."""
    rng = np.random.default_rng(1234)
    centers = rng.normal(size=(N_CLUSTERS, DIM))
    docs = _normalize(centers[rng.integers(N_CLUSTERS, size=N)] + 0.35 * rng.normal(size=(N, DIM)))
    queries = _normalize(docs[rng.integers(N, size=N_QUERIES)] + 0.2 * rng.normal(size=(N_QUERIES, DIM)))
    return docs, queries


def brute_force(docs, queries, k):
    scores = queries.astype(np.float64) @ docs.astype(np.float64).T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, top, axis=1), top


def write_shards(dirpath, docs, bounds, dtypes):
    """Split docs at ``bounds`` into .npy shards with the given dtypes; return the paths."""
    paths = []
    for i, (part, dtype) in enumerate(zip(np.split(docs, bounds), dtypes)):
        path = dirpath / f"shard{i}.npy"
        np.save(path, part.astype(dtype))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def shards32(data, tmp_path_factory):
    return write_shards(tmp_path_factory.mktemp("s32"), data[0], [1700, 3300], [np.float32] * 3)


@pytest.fixture(scope="module")
def flat_exact(data, shards32):
    """Exact top-K rows from the flat index: the reference for approximate recall."""
    return search(build_index(shards32, progress=False), data[1], K)[1]


def test_flat_equals_numpy_brute_force(data, shards32):
    docs, queries = data
    index = build_index(shards32, index_type="flat", use_gpu=False, progress=False)
    assert isinstance(index, faiss.IndexFlatIP) and index.ntotal == N
    scores, rows = search(index, queries, K)
    ref_scores, ref_rows = brute_force(docs, queries, K)
    assert scores.dtype == np.float32 and rows.dtype == np.int64
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)


def test_shard_boundaries_do_not_matter(data, shards32, tmp_path):
    docs, queries = data
    single = write_shards(tmp_path, docs, [], [np.float32])
    a, b = build_index(shards32, progress=False), build_index(single, progress=False)
    # Row order must be the concatenation order, with nothing lost or repeated at boundaries.
    np.testing.assert_array_equal(a.reconstruct_n(0, N), docs)
    np.testing.assert_array_equal(a.reconstruct_n(0, N), b.reconstruct_n(0, N))
    sa, ra = search(a, queries, K)
    sb, rb = search(b, queries, K)
    np.testing.assert_array_equal(ra, rb)
    np.testing.assert_array_equal(sa, sb)


def test_add_blocks_within_a_shard(data, shards32, monkeypatch):
    # Shards larger than the add block are added in several pieces, in order.
    monkeypatch.setattr(ix, "ADD_BATCH_ROWS", 333)
    index = build_index(shards32, progress=False)
    np.testing.assert_array_equal(index.reconstruct_n(0, N), data[0])


def test_float16_shards(data, tmp_path):
    docs, queries = data
    paths = write_shards(tmp_path, docs, [1000, 2500], [np.float16, np.float32, np.float16])
    index = build_index(paths, progress=False)
    as_stored = np.concatenate([np.load(p).astype(np.float32) for p in paths])
    assert as_stored.dtype == np.float32 and not np.array_equal(as_stored, docs)  # float16 did round
    np.testing.assert_array_equal(index.reconstruct_n(0, N), as_stored)
    scores, rows = search(index, queries, K)
    ref_scores, ref_rows = brute_force(as_stored, queries, K)
    np.testing.assert_array_equal(rows, ref_rows)
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)


# nprobe / efSearch are the search-time knobs a config would set; thresholds leave margin
# below the measured recalls (printed with -s).
APPROX = {
    "ivf_flat": (dict(), dict(nprobe=16), 0.9, faiss.IndexIVFFlat),
    "hnsw": (dict(hnsw_m=16, ef_construction=100), dict(ef_search=64), 0.9, faiss.IndexHNSWFlat),
    # 2 dims per sub-quantizer; the default pq_m=8 (4 dims) trades recall for memory, below.
    "ivf_pq": (dict(pq_m=16), dict(nprobe=16), 0.85, faiss.IndexIVFPQ),
}


@pytest.mark.parametrize("index_type", sorted(APPROX))
def test_approximate_build_save_load_recall(index_type, data, shards32, flat_exact, tmp_path):
    build_kw, load_kw, threshold, cls = APPROX[index_type]
    built = build_index(shards32, index_type=index_type, progress=False, **build_kw)
    assert isinstance(built, cls) and built.ntotal == N
    assert built.metric_type == faiss.METRIC_INNER_PRODUCT
    path = tmp_path / f"{index_type}.faiss"
    save_index(built, path)
    loaded = load_index(path, use_gpu=False, **load_kw)
    assert isinstance(loaded, cls) and loaded.ntotal == N
    scores, rows = search(loaded, data[1], K)
    recall = recall_at(rows, flat_exact, K)
    print(f"\nrecall@{K} {index_type} {load_kw}: {recall:.4f}")
    assert recall > threshold
    assert np.all(np.diff(scores, axis=1) <= 1e-6)  # sorted by decreasing score


def test_ivf_pq_default_parameters(data, shards32, flat_exact):
    index = build_index(shards32, index_type="ivf_pq", progress=False)
    assert index.nlist == default_nlist(N) == N // 39  # 4*sqrt(5000) = 283 is clipped to 128
    assert index.pq.M == default_pq_m(DIM) == 8 and index.pq.nbits == 8
    recall = recall_at(search(set_search_params(index, nprobe=16), data[1], K)[1], flat_exact, K)
    print(f"\nrecall@{K} ivf_pq default pq_m=8 nprobe=16: {recall:.4f}")
    assert recall > 0.6


def test_load_index_applies_nprobe(data, shards32, flat_exact, tmp_path):
    path = tmp_path / "ivf.faiss"
    save_index(build_index(shards32, index_type="ivf_flat", nlist=64, progress=False), path)
    recalls = {}
    for nprobe in (1, 4, 16, 64, 1000):
        index = load_index(path, use_gpu=False, nprobe=nprobe)
        assert index.nprobe == min(nprobe, 64)
        recalls[nprobe] = recall_at(search(index, data[1], K)[1], flat_exact, K)
    print(f"\nivf_flat nlist=64 recall@{K} by nprobe: {recalls}")
    values = list(recalls.values())
    assert values == sorted(values)
    assert recalls[1] < 0.95  # nprobe really changes the search...
    assert recalls[64] == recalls[1000] == 1.0  # ...and scanning every list is exact


def test_load_index_applies_ef_search(shards32, tmp_path):
    path = tmp_path / "hnsw.faiss"
    save_index(build_index(shards32, index_type="hnsw", hnsw_m=8, ef_construction=40, progress=False), path)
    assert load_index(path, use_gpu=False, ef_search=77).hnsw.efSearch == 77
    # nprobe means nothing to HNSW (and ef_search nothing to IVF): ignored, not an error.
    assert load_index(path, use_gpu=False, nprobe=5).hnsw.efSearch == 16


def test_ivf_training_is_seeded(data, shards32):
    def centroids(seed):
        index = build_index(shards32, index_type="ivf_flat", nlist=32, train_size=2000, seed=seed, progress=False)
        return index.quantizer.reconstruct_n(0, 32)

    np.testing.assert_array_equal(centroids(7), centroids(7))
    assert not np.array_equal(centroids(7), centroids(8))


def test_search_batches_and_padding(data, shards32):
    docs, queries = data
    index = build_index(shards32, progress=False)
    s1, r1 = search(index, queries, K, batch_size=4096)
    s2, r2 = search(index, queries, K, batch_size=7)  # 200 = 28 * 7 + 4: a short last batch
    np.testing.assert_array_equal(r1, r2)
    np.testing.assert_array_equal(s1, s2)

    small = build_index([docs[:3]], progress=False)
    scores, rows = search(small, queries[:2], 5)
    assert rows.shape == (2, 5)
    assert np.all(rows[:, 3:] == -1) and np.all(np.isneginf(scores[:, 3:]))
    assert sorted(rows[0, :3]) == [0, 1, 2] and np.all(np.isfinite(scores[:, :3]))


def test_aggregate_max_hand_example():
    # Chunk rows 0..5 -> docs: rows 0,1 are doc 0; rows 2,3,4 are doc 1; row 5 is doc 2.
    row_to_doc = np.array([0, 0, 1, 1, 1, 2])
    scores = np.array([[0.9, 0.8, 0.7, 0.6, -np.inf],
                       [0.5, 0.4, 0.3, -np.inf, -np.inf]], dtype=np.float32)
    rows = np.array([[3, 1, 4, 0, -1],
                     [5, 2, 3, -1, -1]])
    doc_scores, docs = aggregate_max(scores, rows, row_to_doc, k=3)
    # Query 0: doc 1 (rows 3, 4) collapses to 0.9, doc 0 (rows 1, 0) to 0.8; only 2 docs.
    np.testing.assert_array_equal(docs, [[1, 0, -1], [2, 1, -1]])
    np.testing.assert_array_equal(doc_scores, np.array([[0.9, 0.8, -np.inf], [0.5, 0.4, -np.inf]], np.float32))
    assert doc_scores.dtype == np.float32 and docs.dtype == np.int64


def test_aggregate_max_unsorted_input_keeps_the_max():
    # The best chunk need not come first: the max still wins.
    doc_scores, docs = aggregate_max(np.array([[0.1, 0.7, 0.3]]), np.array([[0, 1, 2]]), np.array([5, 5, 6]), k=2)
    np.testing.assert_array_equal(docs, [[5, 6]])
    np.testing.assert_allclose(doc_scores, [[0.7, 0.3]])


def test_aggregate_max_identity_without_row_to_doc():
    scores = np.array([[0.9, 0.5, 0.1]], dtype=np.float32)
    rows = np.array([[4, 2, 7]])
    s, d = aggregate_max(scores, rows, None, k=2)
    np.testing.assert_array_equal(d, [[4, 2]])
    np.testing.assert_array_equal(s, scores[:, :2])
    s, d = aggregate_max(scores, rows, None, k=4)  # wider than the input: padded
    np.testing.assert_array_equal(d, [[4, 2, 7, -1]])
    assert np.isneginf(s[0, 3])


def test_aggregate_max_matches_brute_force_maxp(data):
    """MaxP end to end: chunk rows -> search -> aggregate == max over chunks in numpy."""
    docs, queries = data
    rng = np.random.default_rng(5)
    row_to_doc = np.sort(rng.integers(0, 1200, size=N))  # contiguous chunks, 1..~12 per doc
    index = build_index([docs], progress=False)
    scores, rows = search(index, queries, 200)
    doc_scores, doc_ids = aggregate_max(scores, rows, row_to_doc, k=K)

    full = queries.astype(np.float64) @ docs.astype(np.float64).T
    per_doc = np.full((len(queries), row_to_doc.max() + 1), -np.inf)
    np.maximum.at(per_doc.T, row_to_doc, full.T)
    ref = np.argsort(-per_doc, axis=1, kind="stable")[:, :K]
    np.testing.assert_array_equal(doc_ids, ref)
    np.testing.assert_allclose(doc_scores, np.take_along_axis(per_doc, ref, axis=1), atol=1e-5)
    assert all(len(set(r)) == K for r in doc_ids)


def test_recall_at():
    exact = np.array([[1, 2, 3], [4, 5, 6]])
    approx = np.array([[3, 9, 1], [6, -1, -1]])
    assert recall_at(approx, exact, 3) == pytest.approx((2 / 3 + 1 / 3) / 2)
    assert recall_at(exact, exact, 3) == 1.0
    # Only the first k of each side count.
    assert recall_at(np.array([[2, 1]]), np.array([[1, 2]]), 1) == 0.0
    # -1 padding on both sides is not a match.
    assert recall_at(np.array([[-1, -1]]), np.array([[-1, -1]]), 2) == 0.0


def test_save_index_is_atomic(shards32, tmp_path, monkeypatch):
    index = build_index(shards32, progress=False)
    path = tmp_path / "out" / "flat.faiss"
    save_index(index, path)
    assert [p.name for p in path.parent.iterdir()] == ["flat.faiss"]
    assert faiss.read_index(str(path)).ntotal == N

    def fail(index, name):
        with open(name, "wb") as fh:  # a partial write, then a crash
            fh.write(b"partial")
        raise RuntimeError("disk full")

    monkeypatch.setattr(faiss, "write_index", fail)
    with pytest.raises(RuntimeError, match="disk full"):
        save_index(index, tmp_path / "out" / "other.faiss")
    assert [p.name for p in path.parent.iterdir()] == ["flat.faiss"]


@pytest.mark.skipif(gpu_available(), reason="checks the behaviour without a GPU")
def test_gpu_true_without_gpu_raises_and_auto_falls_back(shards32, tmp_path):
    with pytest.raises(GpuUnavailableError, match="use_gpu=True"):
        build_index(shards32, use_gpu=True, progress=False)
    with pytest.raises(GpuUnavailableError):
        build_index(shards32, index_type="hnsw", use_gpu=True, progress=False)
    index = build_index(shards32, index_type="ivf_flat", use_gpu="auto", progress=False)
    assert isinstance(index, faiss.IndexIVFFlat)  # a CPU index
    path = tmp_path / "ivf.faiss"
    save_index(index, path)
    with pytest.raises(GpuUnavailableError):
        load_index(path, use_gpu=True)
    assert isinstance(load_index(path, use_gpu="auto"), faiss.IndexIVFFlat)
    with pytest.raises(ValueError, match="use_gpu"):
        build_index(shards32, use_gpu="yes", progress=False)


class FakeGpu:
    """Stand-ins for the faiss GPU API, recording what the GPU path asks of it."""

    def __init__(self):
        self.to_gpu, self.to_cpu = [], []
        fake = self

        class Options:
            useFloat16 = False

        class Resources:
            pass

        self.Options, self.Resources = Options, Resources

        def index_cpu_to_gpu(res, device, index, co):
            assert isinstance(res, Resources) and device == 0 and isinstance(co, Options)
            fake.to_gpu.append((type(index).__name__, co.useFloat16))
            return index  # keeps running on the CPU

        def index_gpu_to_cpu(index):
            fake.to_cpu.append(type(index).__name__)
            return index

        self.index_cpu_to_gpu, self.index_gpu_to_cpu = index_cpu_to_gpu, index_gpu_to_cpu

    def install(self, monkeypatch):
        monkeypatch.setattr(faiss, "StandardGpuResources", self.Resources, raising=False)
        monkeypatch.setattr(faiss, "GpuClonerOptions", self.Options, raising=False)
        monkeypatch.setattr(faiss, "index_cpu_to_gpu", self.index_cpu_to_gpu, raising=False)
        monkeypatch.setattr(faiss, "index_gpu_to_cpu", self.index_gpu_to_cpu, raising=False)
        monkeypatch.setattr(faiss, "get_num_gpus", lambda: 1)


def test_gpu_path_wiring_with_fake_gpu(data, shards32, flat_exact, monkeypatch):
    """The GPU code path (untestable for real here) clones flat/IVF indexes, never HNSW."""
    fake = FakeGpu()
    fake.install(monkeypatch)
    assert gpu_available()
    flat = build_index(shards32, use_gpu="auto", progress=False)
    np.testing.assert_array_equal(search(flat, data[1], K)[1], flat_exact)
    build_index(shards32, index_type="ivf_pq", use_gpu=True, progress=False)
    build_index(shards32, index_type="hnsw", hnsw_m=8, ef_construction=20, use_gpu=True, progress=False)
    build_index(shards32, index_type="ivf_flat", use_gpu=False, progress=False)
    assert fake.to_gpu == [("IndexFlatIP", False), ("IndexIVFPQ", True)]


def test_load_index_gpu_wiring_with_fake_gpu(shards32, tmp_path, monkeypatch):
    for index_type in ("ivf_pq", "hnsw", "flat"):
        save_index(build_index(shards32, index_type=index_type, hnsw_m=8, ef_construction=20, nlist=16,
                               use_gpu=False, progress=False), tmp_path / f"{index_type}.faiss")
    fake = FakeGpu()
    fake.install(monkeypatch)
    assert load_index(tmp_path / "ivf_pq.faiss", use_gpu=True, nprobe=4).nprobe == 4
    assert load_index(tmp_path / "hnsw.faiss", use_gpu=True, ef_search=50).hnsw.efSearch == 50
    load_index(tmp_path / "flat.faiss", use_gpu="auto", nprobe=4)
    load_index(tmp_path / "flat.faiss", use_gpu=False)
    assert fake.to_gpu == [("IndexIVFPQ", True), ("IndexFlatIP", False)]


def test_save_index_converts_gpu_index_to_cpu(shards32, tmp_path, monkeypatch):
    fake = FakeGpu()
    fake.install(monkeypatch)
    index = build_index(shards32, use_gpu=False, progress=False)
    save_index(index, tmp_path / "cpu.faiss")
    assert fake.to_cpu == []  # CPU indexes are written as they are, not copied
    monkeypatch.setattr(ix, "_is_gpu_index", lambda index: True)
    save_index(index, tmp_path / "gpu.faiss")
    assert fake.to_cpu == ["IndexFlatIP"]
    assert faiss.read_index(str(tmp_path / "gpu.faiss")).ntotal == N


def test_default_parameters():
    assert default_pq_m(768) == 64 and default_pq_m(384) == 64 and default_pq_m(32) == 8
    assert default_pq_m(100) == 25 and default_pq_m(31) == 1
    assert default_nlist(8_841_823) == round(4 * 8_841_823 ** 0.5)
    assert default_nlist(10) == 1 and default_nlist(1000) == 25


def test_input_errors(data, tmp_path):
    docs = data[0]
    a = tmp_path / "a.npy"
    b = tmp_path / "b.npy"
    np.save(a, docs[:10])
    np.save(b, docs[:10, :16])
    with pytest.raises(InputError, match="b.npy: dimension 16"):
        build_index([a, b], progress=False)
    np.save(b, docs[0])
    with pytest.raises(InputError, match="2-D"):
        build_index([b], progress=False)
    np.save(b, np.arange(20).reshape(10, 2))
    with pytest.raises(InputError, match="dtype"):
        build_index([b], progress=False)
    with pytest.raises(ValueError, match="index_type"):
        build_index([a], index_type="lsh", progress=False)
    with pytest.raises(ValueError, match="nlist"):
        build_index([a], index_type="ivf_flat", nlist=11, progress=False)
    with pytest.raises(ValueError, match="pq_m"):
        build_index([docs], index_type="ivf_pq", pq_m=5, progress=False)
    with pytest.raises(ValueError, match="no shards"):
        build_index([], progress=False)
    with pytest.raises(FileNotFoundError):
        load_index(tmp_path / "missing.faiss")
    assert set(INDEX_TYPES) == {"flat", "ivf_flat", "hnsw", "ivf_pq"}


def test_set_search_params_on_built_index(shards32):
    index = build_index(shards32, index_type="ivf_flat", nlist=16, progress=False)
    assert set_search_params(index, nprobe=8) is index and index.nprobe == 8
    assert set_search_params(index, nprobe=100).nprobe == 16  # clipped to nlist
