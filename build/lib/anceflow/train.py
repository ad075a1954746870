"""Train: contrastive training of the dual encoder on (query, positive, hard negatives).

The loss is ANCE's: cross-entropy of the positive against the example's hard negatives
(optionally also every other document in the batch). One training job is one round:
round 0 (warmup) trains on BM25 negatives, round n on negatives mined with an earlier
checkpoint.

Interruption safety. Snakemake deletes a job's outputs before it runs, so the resumable
state (model, optimizer, scheduler, RNG, step) lives in ``state_dir``, which is not an
output. Every ``save_every`` steps, and on SIGTERM (what SLURM sends before a time limit),
the state is saved atomically; a re-run of the same job with the same inputs and settings
resumes from it, and on CPU ends bit-identical to an uninterrupted run. The data order is
a pure function of (seed, micro-batch index), so resuming needs no iterator state.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import logging
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from anceflow.digest import source_digest
from anceflow.encode import autocast, pad_batch, pad_multiple, resolve_precision, to_device
from anceflow.errors import INTERRUPTED_EXIT
from anceflow.io import atomic_path
from anceflow.model import EncoderSpec, load_dual_encoder, load_tokenizer
from anceflow.model_source import resolve_model_path
from anceflow.negatives import Negatives
from anceflow.optim import build_optimizer, build_scheduler
from anceflow.provenance import (device_info, negatives_entry, packages, read_manifest, relative, results_root,
                                 source_entry, write_checkpoint_manifest)
from anceflow.tokenize import TokenTable, corpus_documents

log = logging.getLogger(__name__)
LOG_COLUMNS = ["step", "loss", "lr", "examples_per_s", "elapsed_s", "global_step"]
#: In a checkpoint folder: the global step its training ended at (rounds and the control continue
#: from their starting checkpoint's, so their curves line up in TensorBoard and in the report).
TRAINER_STATE = "trainer_state.json"


@dataclass
class TrainSettings:
    """What one training job needs; built from the config's ``train`` section and round settings."""

    init: str                      # checkpoint (or pretrained model) to start from
    negatives: str                 # parquet: qid, pos_pid, neg_pids
    query_tokens: str              # token prefix of the training queries
    corpus_tokens: str             # token prefix of the corpus
    out_dir: str                   # final checkpoint folder (a Snakemake output)
    log_csv: str                   # per-step log (a Snakemake output)
    state_dir: str                 # resumable state (NOT a Snakemake output)
    steps: int
    epochs: float | None = None        # if set, steps = epochs over the examples
    batch_size: int = 16
    negatives_per_example: int = 1
    in_batch_negatives: bool = False
    optimizer: str = "adamw"
    lr: float = 2e-5
    weight_decay: float = 0.01
    eps: float | None = None               # None: 1e-8 for AdamW, 1e-6 for LAMB
    lamb_bias_correction: bool = True
    lamb_max_weight_norm: float | None = None
    warmup_ratio: float = 0.1
    # One schedule across ANCE rounds (the reference's --single_warmup): warmup and total steps of
    # that schedule, and this job's first step in it. None: this job's own warmup_ratio schedule.
    schedule_warmup: int | None = None
    schedule_total: int | None = None
    schedule_offset: int = 0
    grad_accum: int = 1
    max_grad_norm: float = 1.0
    precision: str = "auto"
    attention_dropout: str = "auto"        # auto: the model's on GPUs, off on CPUs; model; off
    gradient_checkpointing: bool = False
    temperature: float | None = None
    save_every: int = 100
    log_every: int = 10
    seed: int = 42
    threads: int | None = None
    init_optimizer: str | None = None  # a state file whose optimizer state to start from (ANCE rounds)
    save_optimizer: bool = False       # keep optimizer.pt in the checkpoint, for the next round to carry over
    tensorboard_dir: str | None = None     # this job's TensorBoard run (one per round / control)

    def fingerprint(self) -> str:
        """Identifies what the training computes: its settings, its inputs' versions and the
        training code (a state saved before a code edit is not resumed)."""
        stable = {k: v for k, v in asdict(self).items() if k not in ("save_every", "log_every", "threads",
                                                                     "tensorboard_dir", "state_dir")}
        for key in ("init", "negatives", "query_tokens", "corpus_tokens", "init_optimizer"):
            if stable.get(key):
                stable[key + "_version"] = _version(stable[key])
        stable["code"] = source_digest()
        return hashlib.sha1(json.dumps(stable, sort_keys=True).encode()).hexdigest()


def _version(path: str) -> list:
    """Size and modification time of a file, a folder's files, or a token prefix's files."""
    p = Path(path)
    files = sorted(p.rglob("*")) if p.is_dir() else sorted(p.parent.glob(p.name + ".*"))
    return [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files if f.is_file()]


def build_examples(negatives: str | Path, query_prefix: str | Path, corpus_prefix: str | Path, k: int) -> np.ndarray:
    """Training examples ``[examples, 2 + k]`` (int64): query row, positive document, k negative
    documents (documents are collection rows), in the negatives file's pair order.

    A pair's negatives are cut into examples of ``k`` (a remainder is dropped); a pair with fewer
    than ``k`` repeats them cyclically to fill one example; a pair with none gives none.
    Vectorised: MS MARCO's 532k pairs x 20 negatives take seconds, not a Python loop per pair.
    """
    pids, _ = corpus_documents(corpus_prefix)
    qids = pq.read_table(f"{query_prefix}.rows.parquet", columns=["qid"]).column("qid").combine_chunks()
    neg = Negatives.read(negatives, qids, pids, queries=str(query_prefix), collection=str(corpus_prefix))
    counts = np.diff(neg.offsets)
    per_pair = np.where(counts > 0, np.maximum(counts, k) // k, 0)
    pair = np.repeat(np.arange(len(neg)), per_pair)
    if not len(pair):
        raise ValueError(f"{negatives}: no training examples (no query has negatives)")
    j = np.arange(len(pair)) - np.repeat(np.cumsum(per_pair) - per_pair, per_pair)
    slot = (j[:, None] * k + np.arange(k)[None, :]) % counts[pair][:, None]
    return np.column_stack([neg.queries[pair], neg.positives[pair], neg.negatives[neg.offsets[pair][:, None] + slot]])


class TrainingData:
    """Examples (query row, positive document, k negative documents) and a seeded order over them."""

    def __init__(self, examples: np.ndarray, query_prefix: str | Path, corpus_prefix: str | Path, seed: int):
        self.examples = examples
        self.seed = seed
        self.queries = TokenTable.open(query_prefix)
        self.corpus = TokenTable.open(corpus_prefix)
        _, self.doc_rows = corpus_documents(corpus_prefix)
        self._epoch, self._order = None, None

    @classmethod
    def build(cls, negatives: str | Path, query_prefix: str | Path, corpus_prefix: str | Path, k: int,
              seed: int) -> "TrainingData":
        return cls(build_examples(negatives, query_prefix, corpus_prefix, k), query_prefix, corpus_prefix, seed)

    def __len__(self) -> int:
        return len(self.examples)

    def order(self, epoch: int) -> np.ndarray:
        """The permutation of epoch ``epoch``, seeded by (seed, epoch); computed once per epoch
        (10M examples: 0.4 s, against a GPU step of ~0.1 s, so never once per micro-batch)."""
        if self._epoch != epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(len(self))
            self._epoch = epoch
        return self._order

    def micro_batch(self, m: int, batch_size: int) -> np.ndarray:
        """Examples of micro-batch ``m``: each epoch is a fresh permutation seeded by (seed, epoch)."""
        per_epoch = max(1, len(self) // batch_size)
        epoch, b = divmod(m, per_epoch)
        order = self.order(epoch)
        if len(self) < batch_size:
            order = np.resize(order, batch_size)
        return self.examples[order[b * batch_size : (b + 1) * batch_size]]


def contrastive_loss(q: torch.Tensor, d: torch.Tensor, n_docs: int, in_batch: bool, temperature: float,
                     chunk_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of each query's positive (its first doc) against its negatives [and the batch's docs].

    MaxP (``chunk_mask`` ``[B * n_docs, C]``, True for a document's real chunks): ``d`` holds
    ``C`` vectors per document and a document scores its best real chunk, as in the reference
    (microsoft/ANCE ``NLL_MultiChunk``); padded chunks never count.
    """
    b = q.shape[0]
    if chunk_mask is None:
        d = d.view(b, n_docs, -1)
        if in_batch:
            scores = q @ d.reshape(-1, d.shape[-1]).T
        else:
            scores = torch.einsum("bh,bnh->bn", q, d)
    else:
        chunks = chunk_mask.shape[1]
        if in_batch:
            scores = (q @ d.T).view(b, b * n_docs, chunks)
            mask = chunk_mask.view(1, b * n_docs, chunks)
        else:
            scores = torch.einsum("bh,bnch->bnc", q, d.view(b, n_docs, chunks, -1))
            mask = chunk_mask.view(b, n_docs, chunks)
        scores = scores.masked_fill(~mask, float("-inf")).amax(dim=-1)
    target = (torch.arange(b, device=q.device) * n_docs if in_batch
              else torch.zeros(b, dtype=torch.long, device=q.device))
    return torch.nn.functional.cross_entropy(scores.float() / temperature, target)


def disable_attention_dropout(model: torch.nn.Module) -> int:
    """Set the dropout on attention probabilities to 0 (the hidden-state dropouts stay).

    On CPUs torch has no fused attention kernel with dropout: with it, scaled-dot-product
    attention falls back to materialising the [batch, heads, length, length] probabilities and
    drawing a random mask over them, which is ~60% of a MiniLM training step at length 256
    (BENCHMARKS.md, training). GPUs fuse it, so ``train.attention_dropout: auto`` keeps it there.
    Returns the number of attention modules changed (Hugging Face BERT/RoBERTa-style ``*SelfAttention``).
    """
    changed = 0
    for module in model.modules():
        if type(module).__name__.endswith("SelfAttention") and isinstance(getattr(module, "dropout", None),
                                                                           torch.nn.Dropout):
            module.dropout.p = 0.0
            changed += 1
    return changed


def document_batch(data: "TrainingData", docs: np.ndarray, pad_id: int, multiple: int):
    """Padded token rows of ``docs`` (collection rows): their first rows for FirstP; for MaxP every
    chunk, as ``[len(docs) * C]`` rows (padding rows for missing chunks) plus the chunk mask."""
    rows = data.doc_rows[docs]
    if rows.shape[1] == 1:
        return (*pad_batch(data.corpus, rows[:, 0], pad_id, multiple), None)
    mask = rows >= 0
    # A missing chunk encodes the document's first chunk again (a valid row), masked out of the scores.
    ids, att = pad_batch(data.corpus, np.where(mask, rows, rows[:, :1]).reshape(-1), pad_id, multiple)
    return ids, att, torch.from_numpy(mask)


class _StopFlag:
    """Set by SIGTERM; the loop saves and exits at the next step boundary."""

    def __init__(self):
        self.set = False
        self.previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.set = True

    def restore(self):
        signal.signal(signal.SIGTERM, self.previous)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _save_state(path: Path, **state) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _write_log(path: str | Path, rows: list[dict]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=LOG_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


class _LiveLog:
    """The training log written as it goes (a row every ``log_every`` steps, flushed), so a long
    warmup can be watched; rewritten whole at the end. Rows resumed from a state come first."""

    def __init__(self, path: str | Path, rows: list[dict]):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.fh = open(path, "w", newline="")
        self.writer = csv.DictWriter(self.fh, fieldnames=LOG_COLUMNS)
        self.writer.writeheader()
        self.writer.writerows(rows)
        self.fh.flush()

    def add(self, row: dict) -> None:
        self.writer.writerow(row)
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def global_step_of(checkpoint: str | Path) -> int:
    """The global step a checkpoint's training ended at (0 for a pretrained model)."""
    state = Path(checkpoint) / TRAINER_STATE
    return json.loads(state.read_text())["global_step"] if state.exists() else 0


def train(s: TrainSettings, *, progress: bool = True) -> dict:
    """Run (or resume) one training job; returns a summary. Exits 143 after saving on SIGTERM."""
    job_start = time.time()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if s.threads:
        torch.set_num_threads(s.threads)
    if s.batch_size % world:
        raise ValueError(f"train.batch_size ({s.batch_size}) must be a multiple of the number of GPUs ({world})")
    if rank == 0:
        log.info("training on %s, processes: %d", device, world)
    torch.manual_seed(s.seed)
    random.seed(s.seed)
    np.random.seed(s.seed)

    model = load_dual_encoder(s.init, seed=s.seed).to(device)
    tokenizer = load_tokenizer(s.init)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    if s.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if s.attention_dropout == "off" or (s.attention_dropout == "auto" and device.type == "cpu"):
        turned_off = disable_attention_dropout(model)
        log.info("attention-probability dropout off in %d attention modules (train.attention_dropout: %s)",
                 turned_off, s.attention_dropout)
    temperature = s.temperature or (0.05 if model.spec.similarity == "cosine" else 1.0)
    # What this job reads, by hash, for the checkpoint's manifest (hashed now: what training used).
    inputs = training_inputs(s) if rank == 0 else None
    data = _training_data(s, rank, world)
    if s.epochs:
        s.steps = max(1, math.ceil(s.epochs * len(data) / (s.batch_size * s.grad_accum)))
        log.info("%s epochs over %d examples = %d steps", s.epochs, len(data), s.steps)
    optimizer = build_optimizer(model, s.optimizer, s.lr, s.weight_decay, eps=s.eps,
                                lamb_bias_correction=s.lamb_bias_correction,
                                lamb_max_weight_norm=s.lamb_max_weight_norm)
    scheduler = _scheduler(optimizer, s)
    precision = resolve_precision(device, s.precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    state_dir = Path(s.state_dir)
    state_file = state_dir / "state.pt"
    fingerprint = s.fingerprint()
    start_step, rows, resumed, earlier_seconds = 0, [], False, 0.0
    if state_file.exists():
        state = torch.load(state_file, map_location=device, weights_only=False)
        if state["fingerprint"] == fingerprint:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            _set_rng_state(state["rng"])
            start_step, rows, resumed = state["step"], state["log"], True
            earlier_seconds = state.get("train_seconds", 0.0)  # the loop's time in interrupted attempts
            log.info("resuming from step %d of %d (%s, saved on %s)", start_step, s.steps, state_file,
                     state.get("reason", "periodic"))
        else:
            log.warning("ignoring %s: it was saved for other inputs, settings or code; starting over", state_file)
    if not resumed and s.init_optimizer:
        # ANCE rounds may carry the previous round's optimizer moments over.
        optimizer.load_state_dict(torch.load(s.init_optimizer, map_location=device, weights_only=False))
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"] = s.lr
        scheduler = _scheduler(optimizer, s)
        log.info("optimizer state carried over from %s", s.init_optimizer)

    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None)
    first_global = global_step_of(s.init)
    writer = _tensorboard(s.tensorboard_dir, fresh=not resumed) if rank == 0 else None
    live = _LiveLog(s.log_csv, rows) if rank == 0 else None

    def save(step: int, reason: str) -> None:
        if rank == 0:
            _save_state(state_file, fingerprint=fingerprint, step=step, reason=reason, model=model.state_dict(),
                        optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                        scaler=scaler.state_dict(), rng=_rng_state(), log=rows,
                        train_seconds=earlier_seconds + time.time() - t0)
            _write_log(state_dir / "log.csv", rows)
        if world > 1:
            dist.barrier()

    stop = _StopFlag()
    n_docs = 1 + s.negatives_per_example
    model.train()
    t0 = time.time()
    window_examples, window_start = 0, time.time()
    try:
        bar = tqdm(total=s.steps, initial=start_step, desc="train", disable=not progress or rank != 0, mininterval=2)
        for step in range(start_step, s.steps):
            # The loss stays on the device: a .item() per micro-batch would make the CPU wait for
            # the GPU instead of queueing the next micro-batch (measured: 14% slower on an H100).
            total_loss = torch.zeros((), device=device)
            for a in range(s.grad_accum):
                batch = data.micro_batch(step * s.grad_accum + a, s.batch_size)[rank::world]
                q_ids, q_mask = pad_batch(data.queries, batch[:, 0], pad_id, pad_multiple(device))
                d_ids, d_mask, chunk_mask = document_batch(data, batch[:, 1:].reshape(-1), pad_id, pad_multiple(device))
                sync = world == 1 or a == s.grad_accum - 1
                ctx = contextlib.nullcontext() if sync else net.no_sync()
                with ctx:
                    with autocast(device, precision):
                        q, d = net(*(to_device(t, device) for t in (q_ids, q_mask, d_ids, d_mask)))
                    # Scores in fp32: with ANCE's dot product they reach the hundreds, where bf16
                    # cannot tell a positive from a negative a few points below it.
                    loss = contrastive_loss(q.float(), d.float(), n_docs, s.in_batch_negatives, temperature,
                                            None if chunk_mask is None else chunk_mask.to(device)) / s.grad_accum
                scaler.scale(loss).backward()
                total_loss += loss.detach()
                window_examples += len(batch) * world
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), s.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            lr = scheduler.get_last_lr()[0]
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            stopping = stop.set
            if world > 1:
                # One collective for the loss and the SIGTERM flag, so every rank stops at the same step.
                reduced = torch.stack([total_loss, torch.tensor(float(stop.set), device=device)])
                dist.all_reduce(reduced)
                total_loss, stopping = reduced[0] / world, reduced[1].item() > 0
            if done % s.log_every == 0 or done == s.steps:
                total_loss = total_loss.item()
                elapsed = time.time() - window_start
                rows.append({"step": done, "loss": round(total_loss, 6), "lr": lr,
                             "examples_per_s": round(window_examples / max(elapsed, 1e-9), 2),
                             "elapsed_s": round(time.time() - t0, 2), "global_step": first_global + done})
                if live is not None:
                    live.add(rows[-1])
                if writer is not None:
                    writer.add_scalar("train/loss", total_loss, first_global + done)
                    writer.add_scalar("train/lr", lr, first_global + done)
                    writer.add_scalar("train/examples_per_s", rows[-1]["examples_per_s"], first_global + done)
                window_examples, window_start = 0, time.time()
                bar.set_postfix(loss=f"{total_loss:.4f}")
            bar.update(1)
            if stopping:
                save(done, "SIGTERM")
                log.warning("SIGTERM: saved state at step %d in %s; re-run the job to resume", done, state_file)
                raise SystemExit(INTERRUPTED_EXIT)
            if done % s.save_every == 0 and done < s.steps:
                save(done, "periodic")
        bar.close()
    finally:
        stop.restore()
        if writer is not None:
            writer.close()
        if live is not None:
            live.close()

    summary = {"steps": s.steps, "examples": len(data), "resumed_from": start_step,
               "final_loss": rows[-1]["loss"] if rows else None, "train_seconds": round(time.time() - t0, 2),
               "wall_seconds": round(earlier_seconds + time.time() - t0, 2)}
    if rank == 0:
        model.eval()

        def finish(folder: Path) -> None:
            # Inside the checkpoint folder before it is renamed into place: all of it or nothing.
            (folder / TRAINER_STATE).write_text(json.dumps(
                {"global_step": first_global + s.steps, "steps": s.steps, "started_at_global_step": first_global}) + "\n")
            if s.save_optimizer:
                torch.save(optimizer.state_dict(), folder / "optimizer.pt")
            write_checkpoint_manifest(
                folder, system=Path(s.out_dir).name, **inputs, config=asdict(s), code_digest=source_digest(),
                packages=packages(), device=device_info(device, world, precision), steps=s.steps,
                examples=len(data), resumed_from=start_step, final_loss=summary["final_loss"],
                train_seconds=summary["wall_seconds"], job_seconds=round(time.time() - job_start, 2))

        model.save(s.out_dir, tokenizer, extra=finish)
        _write_log(s.log_csv, rows)
        shutil.rmtree(state_dir, ignore_errors=True)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary


def training_inputs(s: TrainSettings) -> dict:
    """The manifest's links: the parent checkpoint (or pretrained model), the negatives and what
    mined them, the carried optimizer state; each by sha256 (seconds at MS MARCO size: module
    ``anceflow.provenance``)."""
    root = results_root(s.out_dir)
    init = resolve_model_path(s.init)
    parent = source_entry(init, root, name=None if init == s.init else s.init)
    files = parent.get("files", {})
    recorded = read_manifest(init) if Path(init).is_dir() else None
    if recorded:
        del parent["files"]  # the parent's manifest lists them
        if recorded["weights"]["sha256"] != parent["sha256"]:
            log.warning("%s differs from its manifest.json (sha256 %s, recorded %s): training from it anyway; "
                        "python -m anceflow.verify names the file", init, parent["sha256"],
                        recorded["weights"]["sha256"])
    inputs = {"parent": parent, "negatives": negatives_entry(s.negatives, root)}
    if s.init_optimizer:
        # Usually the parent's optimizer.pt (1 GB for roberta-base), hashed with it just above.
        inside = relative(s.init_optimizer, init)
        inputs["optimizer_from"] = ({"path": relative(s.init_optimizer, root), **files[inside]} if inside in files
                                    else source_entry(s.init_optimizer, root))
    return inputs


def init_checkpoint(name_or_path: str, spec: EncoderSpec, out_dir: str | Path, *, seed: int = 0,
                    model_name: str | None = None) -> dict:
    """The pretrained model saved as a checkpoint (rule init_model, system ``zeroshot``), with a
    manifest naming the model (``model_name``: as the config names it) and hashing its files."""
    start = time.time()
    model = load_dual_encoder(name_or_path, spec, seed=seed)
    tokenizer = load_tokenizer(name_or_path)
    path = resolve_model_path(str(name_or_path))
    parent = source_entry(path, results_root(out_dir), name=model_name or str(name_or_path))
    manifest = {}

    def finish(folder: Path) -> None:
        manifest.update(write_checkpoint_manifest(
            folder, system=Path(out_dir).name, parent=parent,
            config={"name_or_path": str(name_or_path), "spec": asdict(spec), "seed": seed},
            code_digest=source_digest(), packages=packages(), device=device_info(), steps=0,
            job_seconds=round(time.time() - start, 2)))

    model.save(out_dir, tokenizer, extra=finish)
    return manifest


def _scheduler(optimizer: torch.optim.Optimizer, s: TrainSettings):
    """This job's learning-rate schedule: its own warmup and decay over ``s.steps``, or its stretch
    (from ``schedule_offset``) of one schedule that spans every ANCE round."""
    if s.schedule_total is None:
        return build_scheduler(optimizer, int(s.warmup_ratio * s.steps), s.steps)
    return build_scheduler(optimizer, s.schedule_warmup or 0, s.schedule_total, offset=s.schedule_offset)


def _training_data(s: TrainSettings, rank: int, world: int) -> TrainingData:
    """The examples, built once per job: under DDP rank 0 builds them into the state folder and
    the other ranks memory-map that file instead of each repeating the work."""
    if world == 1:
        return TrainingData.build(s.negatives, s.query_tokens, s.corpus_tokens, s.negatives_per_example, s.seed)
    cache = Path(s.state_dir) / f"examples.{s.fingerprint()[:16]}.npy"
    if rank == 0 and not cache.exists():
        examples = build_examples(s.negatives, s.query_tokens, s.corpus_tokens, s.negatives_per_example)
        with atomic_path(cache) as tmp, open(tmp, "wb") as fh:
            np.save(fh, examples)
    dist.barrier()
    return TrainingData(np.load(cache, mmap_mode="r"), s.query_tokens, s.corpus_tokens, s.seed)


def _tensorboard(folder: str | None, fresh: bool):
    """This job's TensorBoard run (``tensorboard --logdir results/<name>/tensorboard``): one folder
    per round and for the control, global steps on the x axis. A job that starts over (not
    resumed) clears its folder, so a retrained round does not draw two curves."""
    if not folder:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is in the slurm and test extras; without it, no curves
        log.info("tensorboard is not installed: no TensorBoard curves (pip install tensorboard)")
        return None
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
    return SummaryWriter(folder)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(s: TrainSettings, *, log_path: str | None = None) -> dict:
    """Train in this process, or, when this job has several GPUs, one process per GPU (DDP).

    The worker processes are started here (what torchrun's standalone mode sets up: rank, world
    size, a local rendezvous), not by torchrun, so that SIGTERM (SLURM's warning before the time
    limit) reaches every worker, each saves at the same step and exits 143, this process waits
    for all of them however long saving takes, and exits 143 itself; if a worker fails, the
    others are stopped. ``ANCEFLOW_NPROC`` overrides the process count (e.g. to test DDP on CPU
    with gloo).
    """
    nproc = int(os.environ.get("ANCEFLOW_NPROC", torch.cuda.device_count() or 1))
    if nproc <= 1 or "WORLD_SIZE" in os.environ:
        return train(s)
    Path(s.state_dir).mkdir(parents=True, exist_ok=True)
    settings_file = Path(s.state_dir) / "settings.json"
    settings_file.write_text(json.dumps(asdict(s), indent=1))
    package_root = str(Path(__file__).resolve().parent.parent)
    base = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")])),
            "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "WORLD_SIZE": str(nproc),
            "LOCAL_WORLD_SIZE": str(nproc)}
    cmd = [sys.executable, "-m", "anceflow.train", str(settings_file)]
    log.info("launching %d processes: %s", nproc, " ".join(cmd))
    stopping = []

    def forward(signum, frame):
        stopping.append(signum)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)

    with open(log_path, "a") if log_path else contextlib.nullcontext(None) as out:
        procs = [subprocess.Popen(cmd, env={**base, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=out,
                                  stderr=subprocess.STDOUT if out else None) for r in range(nproc)]
        previous = signal.signal(signal.SIGTERM, forward)
        kill_at = None
        try:
            while any(p.poll() is None for p in procs):
                failed = [p.returncode for p in procs if p.returncode not in (None, 0, INTERRUPTED_EXIT)]
                if failed and kill_at is None:  # a crashed worker: the others would wait for it forever
                    log.error("a training process failed (exit %s); stopping the others", failed[0])
                    forward(signal.SIGTERM, None)
                    kill_at = time.time() + 60  # stuck in a collective, they may never reach a step boundary
                if kill_at is not None and time.time() > kill_at:
                    for proc in procs:
                        if proc.poll() is None:
                            proc.kill()
                time.sleep(0.2)
        finally:
            signal.signal(signal.SIGTERM, previous)
            for proc in procs:
                if proc.poll() is None:  # only if this process itself is being torn down
                    proc.kill()
    codes = [p.returncode for p in procs]
    failed = [c for c in codes if c not in (0, INTERRUPTED_EXIT)]
    if failed:
        raise SystemExit(failed[0] if failed[0] > 0 else 1)
    if INTERRUPTED_EXIT in codes:
        raise SystemExit(INTERRUPTED_EXIT)
    return {"processes": nproc, "steps": s.steps}


def settings_from_json(path: str | Path) -> TrainSettings:
    return TrainSettings(**json.loads(Path(path).read_text()))


def main(argv: list[str] | None = None) -> int:
    """``python -m anceflow.train settings.json`` (what the workflow runs under torchrun)."""
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    summary = train(settings_from_json(argv[0]))
    if int(os.environ.get("RANK", "0")) == 0:
        log.info("training done: %s", summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
