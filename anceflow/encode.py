"""Encode: a checkpoint turns tokenized rows into vectors, in independent corpus shards.

Shard i of n is a contiguous block of token rows, written as a 2-D ``.npy`` (float16 or
float32) in row order. Inside a shard rows are encoded longest first, so each batch pads
to similar lengths and the first batch shows at once whether memory suffices; vectors are
written back at their row positions. Memory is one batch plus the memory-mapped output,
whatever the corpus size.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from anceflow.io import atomic_path
from anceflow.model import DualEncoder, load_dual_encoder, load_tokenizer
from anceflow.tokenize import TokenTable

log = logging.getLogger(__name__)
DTYPES = {"float16": np.float16, "float32": np.float32}


def shard_bounds(n_rows: int, n_shards: int, shard: int) -> tuple[int, int]:
    """Rows [start, end) of shard ``shard`` (0-based) of ``n_shards`` near-equal blocks."""
    if not 0 <= shard < n_shards:
        raise ValueError(f"shard {shard} out of range for {n_shards} shards")
    return n_rows * shard // n_shards, n_rows * (shard + 1) // n_shards


def pick_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_precision(device: torch.device, precision: str = "auto") -> str:
    """"auto" means bf16 on CUDA (fp16 where bf16 is missing) and fp32 on CPU."""
    if precision == "auto":
        return ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if device.type == "cuda" else "fp32"
    return precision


def autocast(device: torch.device, precision: str = "auto"):
    """An autocast context for the resolved precision (none for fp32)."""
    precision = resolve_precision(device, precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def pad_batch(table: TokenTable, rows: np.ndarray, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded input ids and attention mask for the given token rows."""
    lengths = table.lengths[rows]
    width = int(lengths.max()) if len(rows) else 0
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), width), dtype=np.int64)
    for i, r in enumerate(rows):
        n = int(lengths[i])
        ids[i, :n] = table.tokens[table.offsets[r] : table.offsets[r] + n]
        mask[i, :n] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


@torch.inference_mode()
def encode_rows(model: DualEncoder, table: TokenTable, rows: np.ndarray, out: np.ndarray, *, side: str, pad_id: int,
                batch_size: int, device: torch.device, precision: str = "auto", desc: str = "encode",
                progress: bool = True) -> None:
    """Encode token ``rows`` into ``out[i]`` for the i-th row, longest rows first."""
    order = np.argsort(-table.lengths[rows], kind="stable")
    with tqdm(total=len(rows), desc=desc, unit=" rows", disable=not progress, mininterval=2) as bar:
        for start in range(0, len(rows), batch_size):
            pick = order[start : start + batch_size]
            ids, mask = pad_batch(table, rows[pick], pad_id)
            with autocast(device, precision):
                vectors = model.encode(ids.to(device), mask.to(device), side)
            out[pick] = vectors.float().cpu().numpy().astype(out.dtype, copy=False)
            bar.update(len(pick))


def _open(checkpoint: str | Path, device: torch.device):
    model = load_dual_encoder(checkpoint).to(device).eval()
    tokenizer = load_tokenizer(checkpoint)
    return model, tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def encode_table(checkpoint: str | Path, token_prefix: str | Path, out_path: str | Path, *, side: str,
                 shard: int = 0, shards: int = 1, batch_size: int = 128, dtype: str = "float32",
                 device: str = "auto", precision: str = "auto", threads: int | None = None,
                 progress: bool = True) -> dict:
    """Encode shard ``shard`` of ``shards`` of a tokenized table into a 2-D .npy (atomically)."""
    if threads:
        torch.set_num_threads(threads)
    dev = pick_device(device)
    model, pad_id = _open(checkpoint, dev)
    table = TokenTable.open(token_prefix)
    start, end = shard_bounds(len(table), shards, shard)
    with atomic_path(out_path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=DTYPES[dtype], shape=(end - start, model.dim))
        encode_rows(model, table, np.arange(start, end), out, side=side, pad_id=pad_id, batch_size=batch_size,
                    device=dev, precision=precision, desc=f"encode {side} {shard + 1}/{shards}", progress=progress)
        out.flush()
        del out
    return {"rows": end - start, "start": start, "end": end, "dim": model.dim, "device": str(dev)}
