"""GPU figures for a lent H100/H200: encoding, training and exact search at MS MARCO scale shapes.

Everything is synthetic, so the script needs no dataset or model download: roberta-base's
shape (random weights; speed does not depend on their values) with ANCE's head, passages whose
token lengths follow MS MARCO's shape (log-normal, mean about 76 RoBERTa tokens, 16..256),
queries of about 9 tokens. It measures

1. encoding (``anceflow.encode.encode_rows``, bf16 autocast, longest-first batches): tokens/s,
   the model FLOP/s that implies (real tokens only, padding not counted) as a fraction of the
   card's dense bf16 peak and of a measured 8192^3 bf16 matmul; against the same model fed in
   file order (padding to each batch's longest) and padded to max_doc_len (512), as ANCE's
   reference preprocessing stores passages;
2. training (``anceflow.train.train``, batch 32 x 2 accumulation, bf16): examples/s and peak GPU
   memory with AdamW against bench/train.py's plain reference loop (same micro-batches), then
   with LAMB (the msmarco-passage preset) and with the same 64 examples in one micro-batch;
3. exact inner-product search of --queries queries against --corpus vectors (768-d) for the
   top 100: faiss-gpu when it imports, else torch (cuBLAS GEMM + top-k, which is what an exact
   GPU search is); and faiss-cpu's IndexFlatIP on this machine's cores for --cpu-queries of them.

    python bench/gpu.py                 # on the GPU machine
    python bench/gpu.py --cpu           # tiny sizes on the CPU, to check the script

It writes its section of BENCHMARKS.md (use --benchmarks-file to put it elsewhere).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # anceflow, also where it is not pip-installed

from common import Figures, add_record_args  # noqa: E402
from train import peak_memory_mb, reference_loop, steady_rate  # noqa: E402

# Dense bf16 tensor-core peaks (no sparsity) from NVIDIA's data sheets, TFLOP/s.
PEAK_BF16 = {"H100 PCIe": 756, "H100 NVL": 835, "H100": 989, "H200": 989, "A100": 312, "L40S": 362, "A10G": 70}


def peak_for(name: str) -> float | None:
    for key, tflops in PEAK_BF16.items():  # most specific first
        if key in name:
            return tflops * 1e12
    return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----------------------------------------------------------------------------- synthetic inputs

def make_checkpoint(folder: Path, *, hidden: int, layers: int, heads: int, vocab: int = 50265) -> Path:
    """roberta-base's shape with ANCE's head and a minimal tokenizer (only its pad id is used)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    from anceflow.model import DualEncoder, EncoderSpec

    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=vocab, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                           intermediate_size=4 * hidden, max_position_embeddings=514, type_vocab_size=1)
    vocab_map = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel(vocab_map, unk_token="<unk>")),
                                        bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    DualEncoder(RobertaModel(config, add_pooling_layer=False), None,
                EncoderSpec("cls", "linear_layernorm", "dot", True)).save(folder, tokenizer)
    return folder


def write_table(prefix: Path, lengths: np.ndarray, id_name: str, vocab: int, rng: np.random.Generator) -> None:
    """A token table in anceflow's layout: <s> random ids </s> per row."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tokens = rng.integers(4, vocab, size=int(lengths.sum()), dtype=np.int32)
    ends = np.cumsum(lengths)
    tokens[ends - lengths] = 0
    tokens[ends - 1] = 2
    np.save(f"{prefix}.tokens.npy", tokens)
    np.save(f"{prefix}.lengths.npy", lengths.astype(np.int32))
    pq.write_table(pa.table({"row": np.arange(len(lengths)), id_name: [f"{id_name[0]}{i}" for i in range(len(lengths))]}),
                   f"{prefix}.rows.parquet")


def passage_lengths(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.lognormal(math.log(70), 0.4, n), 16, 256).astype(np.int32)


def query_lengths(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.clip(rng.lognormal(math.log(9), 0.35, n), 4, 32).astype(np.int32)


def flops_per_sequence(lengths: np.ndarray, hidden: int, layers: int) -> float:
    """Forward FLOPs over real tokens: 2 x (matmul params) per token + attention scores and mixing."""
    per_token = 2 * layers * 12 * hidden * hidden + 2 * hidden * hidden  # QKV+O (4h^2) + MLP (8h^2) per layer; head
    attention = 4 * layers * hidden * lengths.astype(np.float64) ** 2  # QK^T and AV, 2 FLOPs per multiply-add
    return float(per_token * lengths.sum() + attention.sum())


def matmul_tflops(device: torch.device, size: int) -> float:
    a = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    b = torch.randn(size, size, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    sync(device)
    t, reps = time.perf_counter(), 10
    for _ in range(reps):
        a @ b
    sync(device)
    return 2 * size**3 * reps / (time.perf_counter() - t)


# ----------------------------------------------------------------------------- the three measurements

def bench_encode(out: Figures, ckpt: Path, prefix: Path, device: torch.device, args, dims) -> None:
    from anceflow.encode import encode_rows, pad_batch
    from anceflow.model import load_dual_encoder
    from anceflow.tokenize import TokenTable

    model = load_dual_encoder(ckpt).to(device).eval()
    table = TokenTable.open(prefix)
    n = len(table)
    vectors = np.empty((n, model.dim), dtype=np.float32)
    kw = dict(side="doc", pad_id=1, batch_size=args.encode_batch, device=device, progress=False)
    encode_rows(model, table, np.arange(min(n, 4 * args.encode_batch)), vectors, **kw)  # warm-up
    tokens = int(table.lengths.sum())
    flops = flops_per_sequence(np.asarray(table.lengths), *dims)
    # Two passes: the first meets each padded width for the first time (kernel selection per
    # shape); the second is what the rest of a large corpus runs at.
    for label in ("first pass", "second pass"):
        sync(device)
        t = time.perf_counter()
        encode_rows(model, table, np.arange(n), vectors, **kw)
        sync(device)
        seconds = time.perf_counter() - t
        out(f"encode ours ({label}): {n:,} passages, {tokens:,} tokens (mean {tokens / n:.1f}), batch "
            f"{args.encode_batch}, precision auto: {seconds:.2f} s, {n / seconds:,.0f} passages/s, "
            f"{tokens / seconds:,.0f} tokens/s, {flops / seconds / 1e12:.1f} model TFLOP/s")
    achieved = flops / seconds
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak, measured = peak_for(name), matmul_tflops(device, 8192)
        out(f"  {name}: {achieved / measured:.1%} of a measured 8192^3 bf16 matmul ({measured / 1e12:.0f} TFLOP/s)"
            + (f", {achieved / peak:.1%} of the data-sheet dense bf16 peak ({peak / 1e12:.0f})" if peak else ""))

    # Baselines on a subset: file order (pad to each batch's longest) and fixed padding to max_doc_len.
    subset = np.arange(min(n, args.baseline_passages))
    sub_tokens = int(table.lengths[subset].sum())
    from anceflow.encode import autocast

    def plain(pad_to: int | None) -> float:
        sync(device)
        t = time.perf_counter()
        with torch.inference_mode():
            for start in range(0, len(subset), args.encode_batch):
                ids, mask = pad_batch(table, subset[start : start + args.encode_batch], 1)
                if pad_to:
                    ids = torch.nn.functional.pad(ids, (0, pad_to - ids.shape[1]), value=1)
                    mask = torch.nn.functional.pad(mask, (0, pad_to - mask.shape[1]), value=0)
                with autocast(device, "auto"):
                    model.encode(ids.to(device), mask.to(device), "doc").float().cpu()
        sync(device)
        return time.perf_counter() - t

    sync(device)
    t = time.perf_counter()
    encode_rows(model, table, subset, vectors[: len(subset)], **kw)
    sync(device)
    ours_sub = time.perf_counter() - t
    for label, pad_to in (("file order, pad to batch max", None), (f"padded to {args.max_doc_len}", args.max_doc_len)):
        s = plain(pad_to)
        out(f"encode baseline ({label}), {len(subset):,} passages: {sub_tokens / s:,.0f} tokens/s; "
            f"ours on the same passages {sub_tokens / ours_sub:,.0f} tokens/s = {s / ours_sub:.2f}x")


def bench_train(out: Figures, ckpt: Path, work: Path, device: torch.device, args) -> None:
    import pandas as pd

    from anceflow.encode import pad_batch, pad_multiple
    from anceflow.train import TrainingData, TrainSettings, train

    rng = np.random.default_rng(1)
    n_q, n_docs = args.train_queries, args.passages
    write_table(work / "queries", query_lengths(n_q, rng), "qid", args.vocab, rng)
    neg = pd.DataFrame({"qid": [f"q{i}" for i in range(n_q)],
                        "pos_pid": [f"p{i}" for i in rng.integers(0, n_docs, n_q)],
                        "neg_pids": [[f"p{j}" for j in rng.integers(0, n_docs, 20)] for _ in range(n_q)]})
    neg.to_parquet(work / "negatives.parquet", index=False)  # anceflow.negatives' layout, without its pytrec_eval import
    batch, accum = args.train_batch, 2

    def ours(optimizer: str, micro: int, acc: int) -> tuple[float, float]:
        s = TrainSettings(init=str(ckpt), negatives=str(work / "negatives.parquet"), query_tokens=str(work / "queries"),
                          corpus_tokens=str(work / "corpus"), out_dir=str(work / "trained"), log_csv=str(work / "log.csv"),
                          state_dir=str(work / "state"), steps=args.train_steps, batch_size=micro, grad_accum=acc,
                          optimizer=optimizer, lr=1e-6, negatives_per_example=1, precision="auto", log_every=1,
                          save_every=10**9)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        train(s, progress=False)
        rate = steady_rate(pd.read_csv(s.log_csv)["elapsed_s"].tolist(), micro * acc, args.train_skip)
        return rate, peak_memory_mb(device) / 1024

    data = TrainingData.build(str(work / "negatives.parquet"), str(work / "queries"), str(work / "corpus"), 1, 42)

    def batches():  # the micro-batches ours takes, in the same order
        m = 0
        while True:
            b = data.micro_batch(m, batch)
            m += 1
            q_ids, q_mask = pad_batch(data.queries, b[:, 0], 1, pad_multiple(device))
            d_ids, d_mask = pad_batch(data.corpus, b[:, 1:].reshape(-1), 1, pad_multiple(device))
            yield {"input_ids": q_ids, "attention_mask": q_mask}, {"input_ids": d_ids, "attention_mask": d_mask}

    # Warm-up (not reported): the first steps meet new shapes, and each costs a kernel selection.
    steps = args.train_steps
    args.train_steps = args.train_skip * 2
    ours("adamw", batch, accum)
    args.train_steps = steps
    adamw, adamw_peak = ours("adamw", batch, accum)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    dtype = torch.bfloat16 if device.type == "cuda" else None
    ends = reference_loop(str(ckpt), batches(), steps=args.train_steps, n_docs=2, pooling="cls", similarity="dot",
                          lr=1e-6, temperature=1.0, device=device, dtype=dtype, grad_accum=accum)
    ref = steady_rate(ends, batch * accum, args.train_skip)
    ref_peak = peak_memory_mb(device) / 1024
    head = (f"train, (query, positive, 1 negative) examples, precision auto, {args.train_steps} steps "
            f"(first {args.train_skip} not counted)")
    out(head)
    out(f"  ours, AdamW, batch {batch} x {accum} accumulation: {adamw:,.0f} examples/s, peak memory "
        f"{adamw_peak:.1f} GiB")
    out(f"  reference loop, AdamW, batch {batch} x {accum}: {ref:,.0f} examples/s, peak {ref_peak:.1f} GiB; "
        f"ours / reference = {adamw / ref:.2f}")
    lamb, lamb_peak = ours("lamb", batch, accum)
    out(f"  ours, LAMB (the msmarco-passage preset), batch {batch} x {accum}: {lamb:,.0f} examples/s, "
        f"peak {lamb_peak:.1f} GiB")
    big, big_peak = ours("lamb", batch * accum, 1)
    out(f"  ours, LAMB, batch {batch * accum} x 1 (same examples per step): {big:,.0f} examples/s, "
        f"peak {big_peak:.1f} GiB")


def bench_search(out: Figures, device: torch.device, args) -> None:
    gen = torch.Generator(device=device).manual_seed(0)
    dim, k = 768, 100
    corpus = torch.randn(args.corpus, dim, device=device, generator=gen)
    queries = torch.randn(args.queries, dim, device=device, generator=gen)
    try:
        import faiss

        gpu_faiss = device.type == "cuda" and hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0
    except ImportError:
        faiss, gpu_faiss = None, False
    if gpu_faiss:
        res = faiss.StandardGpuResources()
        index = faiss.GpuIndexFlatIP(res, dim)
        index.add(corpus.cpu().numpy())
        t = time.perf_counter()
        _, top = index.search(queries.cpu().numpy(), k)
        seconds, how = time.perf_counter() - t, "faiss-gpu GpuIndexFlatIP"
    else:
        torch.backends.cuda.matmul.allow_tf32 = False  # exact fp32, as IndexFlatIP
        sync(device)
        t = time.perf_counter()
        top = torch.empty(args.queries, k, dtype=torch.long, device=device)
        for start in range(0, args.queries, 2048):  # 2048 x 1M fp32 scores = 8 GB at a time
            scores = queries[start : start + 2048] @ corpus.T
            top[start : start + 2048] = scores.topk(k, dim=1).indices
        sync(device)
        seconds = time.perf_counter() - t
        top = top.cpu().numpy()
        how = "torch fp32 GEMM + topk (faiss-gpu not importable here)"
    out(f"search exact top-{k}: {args.queries:,} queries x {args.corpus:,} vectors x {dim} ({how}): {seconds:.2f} s, "
        f"{args.queries / seconds:,.0f} queries/s")
    if faiss is not None:
        n_cpu = min(args.cpu_queries, args.queries)
        index = faiss.IndexFlatIP(dim)
        index.add(corpus.cpu().numpy())
        t = time.perf_counter()
        _, cpu_top = index.search(queries[:n_cpu].cpu().numpy(), k)
        cpu_seconds = time.perf_counter() - t
        agree = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(cpu_top, np.asarray(top)[:n_cpu])]))
        out(f"search faiss-cpu IndexFlatIP, {faiss.omp_get_max_threads()} threads, {n_cpu:,} of the queries: "
            f"{n_cpu / cpu_seconds:,.0f} queries/s; GPU / CPU = {(args.queries / seconds) / (n_cpu / cpu_seconds):.0f}x;"
            f" top-{k} overlap {agree:.4f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cpu", action="store_true", help="tiny sizes on the CPU (checks the script, measures nothing)")
    ap.add_argument("--passages", type=int, default=200_000)
    ap.add_argument("--baseline-passages", type=int, default=20_000)
    ap.add_argument("--encode-batch", type=int, default=512)
    ap.add_argument("--max-doc-len", type=int, default=512)
    ap.add_argument("--train-queries", type=int, default=20_000)
    ap.add_argument("--train-batch", type=int, default=32)
    ap.add_argument("--train-steps", type=int, default=40)
    ap.add_argument("--train-skip", type=int, default=10)
    ap.add_argument("--corpus", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=100_000)
    ap.add_argument("--cpu-queries", type=int, default=1_000)
    ap.add_argument("--parts", default="encode,train,search")
    add_record_args(ap)
    args = ap.parse_args()
    dims = (768, 12, 12)  # roberta-base: hidden, layers, heads
    if args.cpu:
        dims = (64, 2, 2)
        args.passages, args.baseline_passages, args.encode_batch, args.max_doc_len = 600, 200, 32, 128
        args.train_queries, args.train_batch, args.train_steps, args.train_skip = 200, 4, 4, 1
        args.corpus, args.queries, args.cpu_queries = 20_000, 500, 100
    elif not torch.cuda.is_available():
        print("no GPU here: run on the GPU machine, or with --cpu to check the script", file=sys.stderr)
        return 2
    args.vocab = 50265
    device = torch.device("cpu" if args.cpu else "cuda")
    title = "GPU: encoding, training, exact search (synthetic roberta-base shapes)"
    out = Figures("gpu-cpu-check" if args.cpu else "gpu", title + (" -- --cpu script check" if args.cpu else ""))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        ckpt = make_checkpoint(work / "ckpt", hidden=dims[0], layers=dims[1], heads=dims[2])
        rng = np.random.default_rng(0)
        write_table(work / "corpus", passage_lengths(args.passages, rng), "pid", args.vocab, rng)
        runs = {"encode": lambda: bench_encode(out, ckpt, work / "corpus", device, args, (dims[0], dims[1])),
                "train": lambda: bench_train(out, ckpt, work, device, args),
                "search": lambda: bench_search(out, device, args)}
        for part in args.parts.split(","):
            try:  # one part failing should not cost the others' figures (device time is scarce)
                runs[part]()
            except Exception as exc:  # noqa: BLE001
                traceback.print_exc()
                out(f"{part}: FAILED ({type(exc).__name__}: {exc})")
    out.record(args, notes="Synthetic inputs (see the script's docstring); a model with random weights runs at "
                           "the speed of the trained one.")
    print(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
