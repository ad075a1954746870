"""Encode: a checkpoint turns tokenized rows into vectors, in independent corpus shards.

Shard i of n is a contiguous block of token rows, written as a 2-D ``.npy`` (float16 or
float32) in row order. Inside a shard rows are encoded longest first, so each batch pads
to similar lengths and the first batch shows at once whether memory suffices; vectors are
written back at their row positions. Memory is one batch plus the memory-mapped output,
whatever the corpus size.

A corpus shard also writes a *probe* (``probe_path``): a fixed, seeded sample of its rows with
their global row numbers, the pid the tokenizer recorded for each, and their vectors as stored,
taken from the model's output paired with the row it encoded, not read back from the shard.
The search job queries these vectors and expects each back under its own pid, at its own score,
with the vector stored at its row (:func:`anceflow.search.check_self_retrieval`): a shard whose
rows ended up out of order, shards searched in the wrong order, or a pid table that does not
belong to the vectors fail there instead of giving runs with near-zero metrics.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

from anceflow.errors import InputError
from anceflow.io import atomic_path
from anceflow.model import DualEncoder, load_dual_encoder, load_tokenizer
from anceflow.tokenize import TokenTable

log = logging.getLogger(__name__)
DTYPES = {"float16": np.float16, "float32": np.float32}
#: Corpus rows the search job's self-check queries, over all shards (each shard draws its share).
SELF_CHECK_ROWS = 1000
#: Fixed, so every checkpoint is checked on the same rows.
SELF_CHECK_SEED = 20210


def shard_bounds(n_rows: int, n_shards: int, shard: int) -> tuple[int, int]:
    """Rows [start, end) of shard ``shard`` (0-based) of ``n_shards`` near-equal blocks."""
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} out of range for {n_shards} shards")
    return n_rows * shard // n_shards, n_rows * (shard + 1) // n_shards


def probe_rows(n_rows: int, n_shards: int, shard: int, size: int = SELF_CHECK_ROWS) -> np.ndarray:
    """The (sorted, global) rows of shard ``shard`` whose vectors the search's self-check queries:
    ``ceil(size / n_shards)`` of them (all when the shard is smaller), drawn without replacement
    with a seed fixed per shard. A share per shard, so that a single bad shard always shows."""
    start, end = shard_bounds(n_rows, n_shards, shard)
    take = min(end - start, -(-size // n_shards))
    rng = np.random.default_rng([SELF_CHECK_SEED, shard])
    return start + np.sort(rng.choice(end - start, size=take, replace=False))


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def cpu_has_native_bf16() -> bool:
    """True where the CPU runs bf16 matrix products natively (AVX512-BF16 or AMX)."""
    # torch exposes these probes only as private helpers; a torch without them gets fp32.
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


def resolve_precision(device: torch.device, precision: str = "auto") -> str:
    """Resolve "auto": bf16 on CUDA (fp16 where bf16 is missing); on CPU bf16 where the CPU has
    native bf16, for encoding (2.6x faster; SciFact nDCG@10 within 0.001 of fp32) and for training
    (autocast only: weights, optimizer, scores and loss stay fp32; BENCHMARKS.md), otherwise fp32."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def autocast(device: torch.device, precision: str = "auto"):
    """An autocast context for the resolved precision (none for fp32)."""
    precision = resolve_precision(device, precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def pad_multiple(device: torch.device) -> int:
    """Width multiple for padded batches: 8 on GPUs (see :func:`pad_batch`), none on CPUs."""
    return 8 if device.type == "cuda" else 1


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Copy a CPU tensor to ``device``; to a GPU through pinned memory, without waiting for the copy
    (a copy from pageable memory makes the CPU wait for the GPU's queue to drain)."""
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def pad_batch(table: TokenTable, rows: np.ndarray, pad_id: int, multiple_of: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded input ids and attention mask for the given token rows (one gather, no per-row loop).

    ``multiple_of`` rounds the width up (8 on GPUs: tensor-core-friendly shapes, and far fewer
    distinct shapes, each of which costs a kernel selection the first time it is seen).
    """
    rows = np.asarray(rows, dtype=np.int64)
    lengths = table.lengths[rows].astype(np.int64)
    width = -(-int(lengths.max()) // multiple_of) * multiple_of if len(rows) else 0
    positions = np.arange(width, dtype=np.int64)
    mask = positions[None, :] < lengths[:, None]
    # Past a row's end, read its first token (always a valid index) and overwrite it with pad.
    index = table.offsets[rows][:, None] + np.where(mask, positions[None, :], 0)
    ids = np.where(mask, table.tokens[index], pad_id).astype(np.int64)
    return torch.from_numpy(ids), torch.from_numpy(mask.astype(np.int64))


@torch.inference_mode()
def encode_rows(model: DualEncoder, table: TokenTable, rows: np.ndarray, out: np.ndarray, *, side: str, pad_id: int,
                batch_size: int, device: torch.device, precision: str = "auto", desc: str = "encode",
                progress: bool = True, flush_every: int = 32, keep: np.ndarray | None = None,
                kept: np.ndarray | None = None) -> None:
    """Encode token ``rows`` into ``out[i]`` for the i-th row, longest rows first.

    On a GPU, vectors stay on the device for ``flush_every`` batches before one copy back:
    a copy per batch would make the CPU wait for every batch instead of queueing the next.
    ``keep`` (sorted positions into ``rows``) also copies those rows' vectors, in ``out``'s dtype,
    into ``kept[j]`` for ``keep[j]``, from the model's output beside the position it goes to.
    """
    order = np.argsort(-table.lengths[rows], kind="stable")
    pending: list[tuple[np.ndarray, torch.Tensor]] = []

    def flush():
        if pending:
            vectors = torch.cat([v for _, v in pending]).float().cpu().numpy().astype(out.dtype, copy=False)
            positions = np.concatenate([p for p, _ in pending])
            out[positions] = vectors
            if keep is not None and len(keep):
                j = np.searchsorted(keep, positions).clip(max=len(keep) - 1)
                hit = keep[j] == positions
                kept[j[hit]] = vectors[hit]
            pending.clear()

    with tqdm(total=len(rows), desc=desc, unit=" rows", disable=not progress, mininterval=2) as bar:
        for start in range(0, len(rows), batch_size):
            pick = order[start : start + batch_size]
            ids, mask = pad_batch(table, rows[pick], pad_id, pad_multiple(device))
            with autocast(device, precision):
                pending.append((pick, model.encode(to_device(ids, device), to_device(mask, device), side)))
            if len(pending) >= (flush_every if device.type == "cuda" else 1):
                flush()
            bar.update(len(pick))
        flush()


def _open(checkpoint: str | Path, device: torch.device):
    model = load_dual_encoder(checkpoint).to(device).eval()
    tokenizer = load_tokenizer(checkpoint)
    return model, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def encode_table(checkpoint: str | Path, token_prefix: str | Path, out_path: str | Path, *, side: str,
                 shard: int = 0, shards: int = 1, batch_size: int = 128, dtype: str = "float32",
                 device: str = "auto", precision: str = "auto", threads: int | None = None,
                 probe_path: str | Path | None = None, progress: bool = True) -> dict:
    """Encode shard ``shard`` of ``shards`` of a tokenized table into a 2-D .npy (atomically).

    ``probe_path`` (corpus shards): also write the self-check's probe there (module docstring),
    an ``.npz`` of ``rows`` (global), ``pids``, ``vectors`` (as stored), ``shard`` and ``shards``.
    """
    if threads:
        torch.set_num_threads(threads)
    dev = pick_device(device)
    model, pad_id = _open(checkpoint, dev)
    table = TokenTable.open(token_prefix)
    start, end = shard_bounds(len(table), shards, shard)
    probe = probe_rows(len(table), shards, shard) if probe_path is not None else None
    kept = np.zeros((0 if probe is None else len(probe), model.dim), dtype=DTYPES[dtype])
    with atomic_path(out_path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=DTYPES[dtype], shape=(end - start, model.dim))
        encode_rows(model, table, np.arange(start, end), out, side=side, pad_id=pad_id, batch_size=batch_size,
                    device=dev, precision=precision, desc=f"encode {side} {shard + 1}/{shards}", progress=progress,
                    keep=None if probe is None else probe - start, kept=kept)
        out.flush()
        del out
        if probe is not None:
            write_probe(probe_path, token_prefix, probe, kept, shard, shards)
    return {"rows": end - start, "start": start, "end": end, "dim": model.dim, "device": str(dev),
            **({"probe_rows": len(probe)} if probe is not None else {})}


def write_probe(path: str | Path, token_prefix: str | Path, rows: np.ndarray, vectors: np.ndarray, shard: int,
                shards: int) -> None:
    """The self-check's probe of one shard; each row's pid is the one its tokens were made from
    (``<prefix>.rows.parquet``), independent of the collection table the search maps rows with."""
    table = pq.read_table(f"{token_prefix}.rows.parquet", columns=["row", "pid"])
    picked = table.take(pa.array(rows))
    if not np.array_equal(picked.column("row").to_numpy(), rows):
        raise InputError(f"{token_prefix}.rows.parquet", "rows are not numbered 0, 1, 2, ... in file order")
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, rows=rows.astype(np.int64), pids=np.array(picked.column("pid").to_pylist(), dtype=str),
                 vectors=vectors, shard=np.int64(shard), shards=np.int64(shards))
