"""Training: the loss, the data order, and interruption safety (SIGTERM and SIGKILL mid-run)."""

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from anceflow.negatives import write_negatives
from anceflow.model import EncoderSpec, load_dual_encoder, load_tokenizer
from anceflow.train import INTERRUPTED_EXIT, TrainingData, TrainSettings, contrastive_loss, train

REPO = Path(__file__).resolve().parents[1]


def test_loss_by_hand():
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    d = torch.tensor([[2.0, 0.0], [0.0, 1.0],   # query 0: positive, negative
                      [0.0, 3.0], [1.0, 0.0]])  # query 1: positive, negative
    expected = -torch.log_softmax(torch.tensor([[2.0, 0.0], [3.0, 0.0]]), dim=1)[:, 0].mean()
    torch.testing.assert_close(contrastive_loss(q, d, 2, False, 1.0), expected)
    # in-batch: every query also scores the other query's documents
    scores = q @ d.T
    expected_ib = torch.nn.functional.cross_entropy(scores / 0.5, torch.tensor([0, 2]))
    torch.testing.assert_close(contrastive_loss(q, d, 2, True, 0.5), expected_ib)


def test_examples_and_seeded_order(small_data):
    data = TrainingData.build(str(small_data["negatives"]), str(small_data["train_queries"]), str(small_data["corpus"]), 2, 7)
    negs = pd.read_parquet(small_data["negatives"])
    assert len(data) == sum(len(n) // 2 for n in negs["neg_pids"])
    a = data.micro_batch(3, 8)
    assert np.array_equal(a, TrainingData.build(str(small_data["negatives"]), str(small_data["train_queries"]),
                                          str(small_data["corpus"]), 2, 7).micro_batch(3, 8))
    assert not np.array_equal(a, data.micro_batch(4, 8))
    per_epoch = len(data) // 8
    epoch0 = np.concatenate([data.micro_batch(m, 8) for m in range(per_epoch)])
    assert len({tuple(r) for r in epoch0}) == per_epoch * 8  # an epoch is a permutation: no repeats
    collection = pd.read_parquet(small_data["prep"] / "collection.parquet")["pid"].tolist()
    row = data.examples[0]
    first = negs.iloc[0]
    assert collection[row[1]] == first["pos_pid"] and collection[row[2]] == first["neg_pids"][0]


def reference_examples(negatives: Path, query_prefix: Path, corpus_prefix: Path, k: int) -> np.ndarray:
    """The examples as the per-pair loop built them before vectorisation (the order users' runs had)."""
    neg = pd.read_parquet(negatives)
    qrow = dict(zip(*pd.read_parquet(f"{query_prefix}.rows.parquet", columns=["qid", "row"]).T.values))
    drow = dict(zip(*pd.read_parquet(f"{corpus_prefix}.rows.parquet", columns=["pid", "row"]).T.values))
    examples = []
    for qid, pos, negs in zip(neg["qid"], neg["pos_pid"], neg["neg_pids"]):
        rows = np.array([drow[p] for p in negs])
        if len(rows) == 0:
            continue
        if len(rows) < k:
            rows = np.resize(rows, k)
        for i in range(0, len(rows) - k + 1, k):
            examples.append([qrow[qid], drow[pos], *rows[i:i + k]])
    return np.asarray(examples, dtype=np.int64)


def reference_micro_batch(examples: np.ndarray, seed: int, m: int, batch_size: int) -> np.ndarray:
    """micro_batch as it was: a fresh permutation of all examples drawn for every call."""
    per_epoch = max(1, len(examples) // batch_size)
    epoch, b = divmod(m, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(len(examples))
    if len(examples) < batch_size:
        order = np.resize(order, batch_size)
    return examples[order[b * batch_size:(b + 1) * batch_size]]


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_example_order_unchanged_across_epochs(small_data, tmp_path, k):
    """Vectorised examples and the cached per-epoch permutation give exactly the old order,
    micro-batch by micro-batch, across an epoch boundary (and with pairs of 0 to 5 negatives)."""
    negs = pd.read_parquet(small_data["negatives"])
    negs["neg_pids"] = [n[: i % 6] for i, n in enumerate(negs["neg_pids"])]  # 0..5 negatives per pair
    write_negatives(negs, tmp_path / "neg.parquet")
    prefixes = (small_data["train_queries"], small_data["corpus"])
    expected = reference_examples(tmp_path / "neg.parquet", *prefixes, k)
    data = TrainingData.build(tmp_path / "neg.parquet", *prefixes, k, seed=3)
    assert np.array_equal(data.examples, expected)
    per_epoch = len(expected) // 5
    for m in [0, 1, per_epoch - 1, per_epoch, per_epoch + 1, 3 * per_epoch + 2]:
        assert np.array_equal(data.micro_batch(m, 5), reference_micro_batch(expected, 3, m, 5)), m


def settings(small_data, init, out: Path, **kw) -> TrainSettings:
    base = dict(init=str(init), negatives=str(small_data["negatives"]), query_tokens=str(small_data["train_queries"]),
                corpus_tokens=str(small_data["corpus"]), out_dir=str(out / "ckpt"), log_csv=str(out / "log.csv"),
                state_dir=str(out / "state"), steps=16, batch_size=4, lr=1e-3, save_every=2, log_every=1, seed=11,
                threads=1)
    base.update(kw)
    return TrainSettings(**base)


@pytest.fixture(scope="module")
def init(tiny_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("init") / "zeroshot"
    load_dual_encoder(tiny_model, EncoderSpec("cls", "linear_layernorm", "dot", True), seed=2).save(
        folder, load_tokenizer(tiny_model))
    return folder


@pytest.fixture(scope="module")
def uninterrupted(small_data, init, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    summary = train(settings(small_data, init, out), progress=False)
    return out, summary


def weights(folder: Path) -> dict:
    tensors = load_file(str(folder / "model.safetensors"))
    tensors.update({f"head.{k}": v for k, v in load_file(str(folder / "head.safetensors")).items()})
    return tensors


def test_training_lowers_the_loss_and_writes_a_checkpoint(uninterrupted):
    out, summary = uninterrupted
    log = pd.read_csv(out / "log.csv")
    assert list(log.columns) == ["step", "loss", "lr", "examples_per_s", "elapsed_s", "global_step"]
    assert log["step"].tolist() == list(range(1, 17))
    assert log["global_step"].tolist() == list(range(1, 17))  # from a pretrained model: global = own steps
    assert json.loads((out / "ckpt/trainer_state.json").read_text())["global_step"] == 16
    assert log["loss"].iloc[-4:].mean() < log["loss"].iloc[:4].mean()
    assert (out / "ckpt/model.safetensors").exists() and not (out / "state").exists()
    assert summary["resumed_from"] == 0


def run_and_interrupt(small_data, init, out: Path, sig: int) -> subprocess.CompletedProcess:
    """Start training in a subprocess, send ``sig`` once some state has been saved, wait for it."""
    s = settings(small_data, init, out, steps=400)
    settings_file = out / "settings.json"
    out.mkdir(parents=True, exist_ok=True)
    settings_file.write_text(json.dumps(asdict(s)))
    proc = subprocess.Popen([sys.executable, "-m", "anceflow.train", str(settings_file)], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not (out / "state/state.pt").exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.time() < deadline, "no state saved within 120 s"
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(sig)
    proc.stdout_text = proc.communicate(timeout=120)[0]
    return proc


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_interrupted_run_resumes_and_matches_the_uninterrupted_one(small_data, init, tmp_path, sig):
    # A long run (400 steps) so the signal lands mid-run; the reference is the same run uninterrupted.
    out = tmp_path / "interrupted"
    proc = run_and_interrupt(small_data, init, out, sig)
    if sig == signal.SIGTERM:
        assert proc.returncode == INTERRUPTED_EXIT, proc.stdout_text
        assert "saved state at step" in proc.stdout_text
    else:
        assert proc.returncode == -signal.SIGKILL
    state = torch.load(out / "state/state.pt", weights_only=False)
    stopped_at = state["step"]
    assert 0 < stopped_at < 400
    assert not (out / "ckpt").exists()
    # The log was written as training went (log_every 1): every step up to where it stopped.
    live = pd.read_csv(out / "log.csv")["step"].tolist()
    assert live[:stopped_at] == list(range(1, stopped_at + 1))

    summary = train(settings(small_data, init, out, steps=400), progress=False)
    assert summary["resumed_from"] == stopped_at
    reference = tmp_path / "reference"
    train(settings(small_data, init, reference, steps=400), progress=False)
    a, b = weights(out / "ckpt"), weights(reference / "ckpt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key  # exactly equal on CPU
    assert pd.read_csv(out / "log.csv")["loss"].tolist() == pd.read_csv(reference / "log.csv")["loss"].tolist()


def test_state_from_other_settings_is_not_resumed(small_data, init, tmp_path):
    out = tmp_path / "run"
    train(settings(small_data, init, out, steps=4, save_every=1, lr=5e-4), progress=False)
    # leave a state behind as if a run with other settings had been killed
    (out / "state").mkdir()
    torch.save({"fingerprint": "something else", "step": 3}, out / "state/state.pt")
    summary = train(settings(small_data, init, out, steps=4), progress=False)
    assert summary["resumed_from"] == 0


def test_ddp_on_cpu_with_two_processes(small_data, init, tmp_path, monkeypatch):
    """The multi-GPU path (torchrun, one process per device) exercised with gloo on CPU."""
    from anceflow.train import launch

    # Without dropout, so that both runs draw no random numbers and must agree.
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(init, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    no_dropout = tmp_path / "init"
    model = load_dual_encoder(init)
    model.query_encoder = AutoModel.from_pretrained(init, config=config)
    model.doc_encoder = model.query_encoder
    model.save(no_dropout, load_tokenizer(init))
    init = no_dropout
    monkeypatch.setenv("ANCEFLOW_NPROC", "2")
    # fp32: the comparison is about the data split across processes, not bf16 rounding.
    s = settings(small_data, init, tmp_path / "ddp", steps=6, precision="fp32")
    log_path = tmp_path / "ddp.log"
    launch(s, log_path=str(log_path))
    assert (tmp_path / "ddp/ckpt/model.safetensors").exists()
    assert "processes: 2" in log_path.read_text()
    single = settings(small_data, init, tmp_path / "single", steps=6, precision="fp32")
    train(single, progress=False)
    a, b = weights(tmp_path / "ddp/ckpt"), weights(tmp_path / "single/ckpt")
    # Same global batch split over two processes: the same updates up to float error. Adam turns a
    # near-zero gradient's rounding into a step of up to lr, so allow that for a handful of elements.
    diffs = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    assert diffs.max() <= 6 * s.lr
    assert (diffs > 1e-4).float().mean() < 1e-4


def test_next_round_can_carry_the_optimizer_state(small_data, init, tmp_path):
    first = settings(small_data, init, tmp_path / "r0", steps=4, save_optimizer=True)
    train(first, progress=False)
    assert (tmp_path / "r0/ckpt/optimizer.pt").exists()
    carried = settings(small_data, tmp_path / "r0/ckpt", tmp_path / "r1", steps=3,
                       init_optimizer=str(tmp_path / "r0/ckpt/optimizer.pt"))
    fresh = settings(small_data, tmp_path / "r0/ckpt", tmp_path / "r1b", steps=3)
    train(carried, progress=False)
    train(fresh, progress=False)
    a, b = weights(tmp_path / "r1/ckpt"), weights(tmp_path / "r1b/ckpt")
    assert any(not torch.equal(a[k], b[k]) for k in a)  # Adam's moments carried over change the updates
    lrs = pd.read_csv(tmp_path / "r1/log.csv")["lr"]
    assert lrs.max() <= carried.lr and lrs.iloc[-1] < lrs.max()  # a fresh schedule at this round's lr


def test_gradient_checkpointing_gives_the_same_training(small_data, init, tmp_path):
    # Without dropout randomness differences: checkpointing recomputes activations, same numbers.
    plain = settings(small_data, init, tmp_path / "plain", steps=3)
    ckpt = settings(small_data, init, tmp_path / "ckpt", steps=3, gradient_checkpointing=True)
    train(plain, progress=False)
    train(ckpt, progress=False)
    a, b = pd.read_csv(tmp_path / "plain/log.csv")["loss"], pd.read_csv(tmp_path / "ckpt/log.csv")["loss"]
    assert np.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_epochs_set_the_number_of_steps(small_data, init, tmp_path):
    s = settings(small_data, init, tmp_path / "ep", steps=1, epochs=0.5, batch_size=4)
    summary = train(s, progress=False)
    n = len(TrainingData.build(str(small_data["negatives"]), str(small_data["train_queries"]), str(small_data["corpus"]), 1, 11))
    assert summary["steps"] == int(np.ceil(0.5 * n / 4))


def test_negatives_naming_unknown_ids_are_rejected(small_data, tmp_path):
    from anceflow.errors import InputError
    from anceflow.negatives import write_negatives

    bad = pd.read_parquet(small_data["negatives"])
    bad.at[0, "neg_pids"] = ["no-such-pid"]
    write_negatives(bad, tmp_path / "bad.parquet")
    with pytest.raises(InputError, match="pid 'no-such-pid' is not in"):
        TrainingData.build(str(tmp_path / "bad.parquet"), str(small_data["train_queries"]), str(small_data["corpus"]), 1, 0)


# ----------------------------------------------------------------------- resume defects (issue 11)

def test_a_stale_state_does_not_drop_the_carried_optimizer(small_data, init, tmp_path):
    """A state.pt of other settings in the state folder must not stop a round from carrying the
    previous round's optimizer (it used to: the carry was an `elif` of the resume)."""
    train(settings(small_data, init, tmp_path / "r0", steps=4, save_optimizer=True), progress=False)
    carried = dict(init_optimizer=str(tmp_path / "r0/ckpt/optimizer.pt"))
    train(settings(small_data, tmp_path / "r0/ckpt", tmp_path / "clean", steps=3, **carried), progress=False)
    stale = tmp_path / "stale"
    (stale / "state").mkdir(parents=True)
    torch.save({"fingerprint": "a run with other settings", "step": 2}, stale / "state/state.pt")
    train(settings(small_data, tmp_path / "r0/ckpt", stale, steps=3, **carried), progress=False)
    a, b = weights(tmp_path / "clean/ckpt"), weights(stale / "ckpt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_training_code_is_part_of_the_resume_fingerprint(small_data, init, tmp_path, monkeypatch):
    """A state saved before the training code changed is not resumed (the code digest is in the
    fingerprint), and the digest follows the modules' content."""
    import shutil

    from anceflow import digest

    out = tmp_path / "interrupted"
    proc = run_and_interrupt(small_data, init, out, signal.SIGTERM)
    assert proc.returncode == INTERRUPTED_EXIT
    monkeypatch.setattr("anceflow.train.source_digest", lambda: "code after an edit")
    summary = train(settings(small_data, init, out, steps=20), progress=False)
    assert summary["resumed_from"] == 0
    copy = tmp_path / "package"
    shutil.copytree(digest.PACKAGE, copy)
    before = digest.source_digest(package=copy)
    (copy / "optim.py").write_text((copy / "optim.py").read_text().replace("beta1", "b1"))
    assert digest.source_digest(package=copy) != before


def _process_alive(pattern: str) -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
    return [line for line in out if pattern in line and "ps -eo" not in line]


def test_sigterm_to_a_two_process_run_saves_exits_143_and_leaves_nothing(small_data, init, tmp_path):
    """SLURM's SIGTERM reaches the launcher of a multi-process (DDP, gloo) run: every worker stops at
    the same step, the state is saved, the launcher exits 143 and no process is left behind."""
    out = tmp_path / "ddp"
    s = settings(small_data, init, out, steps=2000, save_every=5)
    out.mkdir()
    (out / "launch.json").write_text(json.dumps(asdict(s)))
    code = ("import json, sys; from anceflow.train import TrainSettings, launch\n"
            f"launch(TrainSettings(**json.load(open({str(out / 'launch.json')!r}))), log_path={str(out / 'log')!r})")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env={**os.environ, "ANCEFLOW_NPROC": "2"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 180
    while not (out / "state/state.pt").exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.time() < deadline, "no state saved within 180 s"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    text = proc.communicate(timeout=180)[0]
    assert proc.returncode == INTERRUPTED_EXIT, text + (out / "log").read_text()[-3000:]
    state = torch.load(out / "state/state.pt", weights_only=False)
    assert state["reason"] == "SIGTERM" and 0 < state["step"] < 2000
    time.sleep(0.5)
    assert not _process_alive(str(out / "state/settings.json"))


def test_gradient_checkpointing_with_a_shared_encoder_under_ddp(small_data, init, tmp_path, monkeypatch):
    """DDP (2 gloo processes) with gradient checkpointing and one encoder for queries and documents:
    reentrant checkpointing fails here ("marked ready twice"); non-reentrant trains."""
    from anceflow.train import launch

    monkeypatch.setenv("ANCEFLOW_NPROC", "2")
    s = settings(small_data, init, tmp_path / "gc", steps=3, gradient_checkpointing=True)
    launch(s, log_path=str(tmp_path / "gc.log"))
    assert pd.read_csv(tmp_path / "gc/log.csv")["step"].tolist() == [1, 2, 3]


# ----------------------------------------------------------------------- schedule and MaxP (issue 11)

def test_rounds_under_one_schedule_continue_it(small_data, init, tmp_path):
    """ance.schedule: global: round 2 picks the learning rate up where round 1 left it (warmup over
    both rounds' first steps, then one linear decay), as the reference's --single_warmup."""
    kw = dict(lr=1e-3, schedule_warmup=6, schedule_total=40)
    train(settings(small_data, init, tmp_path / "r1", steps=10, schedule_offset=0, **kw), progress=False)
    train(settings(small_data, tmp_path / "r1/ckpt", tmp_path / "r2", steps=10, schedule_offset=10, **kw),
          progress=False)
    lrs = pd.concat([pd.read_csv(tmp_path / f"r{n}/log.csv")["lr"] for n in (1, 2)]).tolist()
    expected = [1e-3 * (min(k / 6, (40 - k) / 34)) for k in range(20)]
    assert np.allclose(lrs, expected)


def test_maxp_loss_scores_a_document_by_its_best_real_chunk():
    q = torch.tensor([[1.0, 0.0]])
    # one example: positive with chunks scoring 1 and 3 (best 3), a negative with 2 and a padded chunk
    d = torch.tensor([[1.0, 0.0], [3.0, 0.0], [2.0, 0.0], [9.0, 0.0]])
    mask = torch.tensor([[True, True], [True, False]])
    expected = -torch.log_softmax(torch.tensor([3.0, 2.0]), dim=0)[0]
    torch.testing.assert_close(contrastive_loss(q, d, 2, False, 1.0, mask), expected)
    # in-batch with one query: the same documents, same loss
    torch.testing.assert_close(contrastive_loss(q, d, 2, True, 1.0, mask), expected)


def test_maxp_training_encodes_every_chunk(small_data, init, tmp_path):
    """A MaxP corpus (3 chunks of 16 tokens): a training batch holds all of each document's chunks
    (padding rows, masked, where a document has fewer) and training runs on them."""
    from anceflow.tokenize import tokenize_corpus
    from anceflow.train import document_batch

    corpus = tmp_path / "maxp/corpus"
    tokenize_corpus(small_data["prep"] / "collection.parquet", corpus, str(init), max_len=16, chunks=3,
                    progress=False)
    data = TrainingData.build(small_data["negatives"], small_data["train_queries"], corpus, 1, seed=0)
    assert data.doc_rows.shape[1] == 3 and (data.doc_rows[:, 1] >= 0).any() and (data.doc_rows < 0).any()
    batch = data.micro_batch(0, 4)
    ids, mask, chunk_mask = document_batch(data, batch[:, 1:].reshape(-1), 0, 1)
    assert ids.shape[0] == 4 * 2 * 3 and chunk_mask.shape == (8, 3)
    assert chunk_mask.numpy().tolist() == (data.doc_rows[batch[:, 1:].reshape(-1)] >= 0).tolist()
    s = settings(small_data, init, tmp_path / "maxp", steps=2, log_every=1, corpus_tokens=str(corpus))
    train(s, progress=False)
    assert pd.read_csv(tmp_path / "maxp/log.csv")["step"].tolist() == [1, 2]


def test_attention_dropout_off_changes_only_the_attention_probabilities(init):
    """train.attention_dropout auto/off: the dropout on attention probabilities goes (on CPUs it is
    most of a step's time), hidden-state dropouts stay, and nothing of it reaches the saved config."""
    from anceflow.train import disable_attention_dropout

    model = load_dual_encoder(init)
    before = {name: m.p for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert disable_attention_dropout(model) == 2  # the tiny BERT's two layers
    after = {name: m.p for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    changed = {name for name in before if before[name] != after[name]}
    assert changed and all(name.endswith("attention.self.dropout") for name in changed)
    assert all(after[name] == before[name] > 0 for name in before if name not in changed)
    assert model.query_encoder.config.attention_probs_dropout_prob == before[sorted(changed)[0]]


def test_a_round_continues_the_global_step_and_writes_its_own_tensorboard_run(small_data, uninterrupted, tmp_path):
    """Round n starts from round n-1's checkpoint: its log and TensorBoard curve continue at the
    global step where that training ended, in a TensorBoard run of its own."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first, _ = uninterrupted
    s = settings(small_data, first / "ckpt", tmp_path, steps=6, tensorboard_dir=str(tmp_path / "tb/round-1"))
    train(s, progress=False)
    log = pd.read_csv(tmp_path / "log.csv")
    assert log["step"].tolist() == list(range(1, 7)) and log["global_step"].tolist() == list(range(17, 23))
    events = EventAccumulator(str(tmp_path / "tb/round-1"))
    events.Reload()
    assert [e.step for e in events.Scalars("train/loss")] == list(range(17, 23))
    assert json.loads((tmp_path / "ckpt/trainer_state.json").read_text())["global_step"] == 22
