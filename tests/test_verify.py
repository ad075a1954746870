"""Provenance: checkpoint manifests, what mined each negatives file, and ``python -m anceflow.verify``."""

import contextlib
import json
import os
from dataclasses import asdict
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from anceflow.negatives import write_negatives
from anceflow.provenance import (MANIFEST, hash_tree, mining_provenance, negatives_entry, read_manifest, sha256_file,
                                 source_entry, tree_digest, write_checkpoint_manifest)
from anceflow.verify import verify


def check(root: Path) -> tuple[int, list[str]]:
    lines = []
    return verify(root, out=lines.append), lines


@contextlib.contextmanager
def flipped(path: Path, offset: int | None = None):
    """One byte of ``path`` inverted (the middle one by default), restored afterwards."""
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if offset is None else offset
    data[i] ^= 0xFF
    original, times = path.read_bytes(), path.stat()
    path.write_bytes(bytes(data))
    try:
        yield path
    finally:
        path.write_bytes(original)
        # Its time too: the run may be shared with tests that ask Snakemake what is stale.
        os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))


def fake_checkpoint(folder: Path, seed: int) -> None:
    """Checkpoint-like files: weights of random bytes, a config, a sub-folder (sentence-transformers' modules)."""
    rng = np.random.default_rng(seed)
    (folder / "2_Dense").mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(rng.bytes(4096))
    (folder / "config.json").write_text(json.dumps({"seed": seed}))
    (folder / "2_Dense/model.safetensors").write_bytes(rng.bytes(512))


def mined(root: Path, n: int, run: Path, **kw) -> None:
    """negatives/round-n.parquet and its JSON, as rules bm25_negatives / mine_negatives write them."""
    negatives = root / f"negatives/round-{n}.parquet"
    write_negatives(pd.DataFrame({"qid": ["q1", "q2"], "pos_pid": ["p1", "p2"],
                                  "neg_pids": [[f"p{n + 3}", "p4"], ["p5", f"p{n + 6}"]]}), negatives)
    stats = {"round": n, "queries": 2, **mining_provenance(negatives, run=run, **kw)}
    negatives.with_suffix(".json").write_text(json.dumps(stats, indent=1))


def trained(root: Path, system: str, parent: str, n: int) -> None:
    folder = root / f"checkpoints/{system}"
    fake_checkpoint(folder, seed=sum(map(ord, system)))
    write_checkpoint_manifest(folder, system=system, parent=source_entry(root / f"checkpoints/{parent}", root),
                              negatives=negatives_entry(root / f"negatives/round-{n}.parquet", root), steps=5)


@pytest.fixture
def results(tmp_path) -> Path:
    """A hand-made results folder: zeroshot <- round-0 (BM25 negatives) <- round-1 (negatives mined
    with round-0), bm25neg <- round-0; the dense run round 1 drew from is deleted, as by default."""
    root = tmp_path / "results/demo"
    pretrained = tmp_path / "models/tiny"
    fake_checkpoint(pretrained, seed=0)
    fake_checkpoint(root / "checkpoints/zeroshot", seed=1)
    write_checkpoint_manifest(root / "checkpoints/zeroshot", system="zeroshot",
                              parent=source_entry(pretrained, root, name="org/tiny"), steps=0)
    (root / "runs/bm25").mkdir(parents=True)
    (root / "runs/bm25/train.trec").write_text("q1 Q0 p3 1 9.0 bm25\nq1 Q0 p4 2 8.0 bm25\n")
    mined(root, 0, root / "runs/bm25/train.trec", bm25={"k1": 0.9, "b": 0.4, "topk": 200})
    trained(root, "round-0", "zeroshot", 0)
    (root / "runs/round-0").mkdir(parents=True)
    np.save(root / "runs/round-0/train.rows.npy", np.array([[2, 3], [4, 5]], dtype=np.int32))
    mined(root, 1, root / "runs/round-0/train.rows.npy", checkpoint=root / "checkpoints/round-0")
    (root / "runs/round-0/train.rows.npy").unlink()
    trained(root, "round-1", "round-0", 1)
    trained(root, "bm25neg", "round-0", 0)
    return root


def test_a_complete_chain_passes(results):
    code, lines = check(results)
    assert code == 0, "\n".join(lines)
    assert lines[-1].startswith("verified 4 checkpoints:") and "1 not recomputed" in lines[-1]
    text = "\n".join(lines)
    assert "ok    checkpoints/round-1 <- checkpoints/round-0: the parent it was trained from" in text
    assert "ok    negatives/round-1.parquet: mined with checkpoints/round-0" in text
    assert "ok    negatives/round-0.parquet: mined with BM25 (k1 0.9, b 0.4, topk 200): the chain ends" in text
    assert "ok    runs/bm25/train.trec: the run negatives/round-0.parquet were drawn from" in text
    assert "ok    checkpoints/zeroshot <- org/tiny" in text
    # The deleted intermediate run is said, not failed.
    assert [line for line in lines if line.startswith("skip")] == [
        line for line in lines if "runs/round-0/train.rows.npy: not there" in line]
    # The parent comes before its children; round-0's negatives (used twice) are followed once.
    order = [line.split()[1].rstrip(":") for line in lines if " files (" in line]
    assert order == ["checkpoints/zeroshot", "checkpoints/round-0", "checkpoints/round-1", "checkpoints/bm25neg"]
    assert sum("mined with BM25" in line for line in lines) == 1


def test_one_changed_byte_of_a_negatives_file_fails_naming_it(results):
    path = results / "negatives/round-1.parquet"
    with flipped(path):
        code, lines = check(results)
    assert code == 1
    assert lines[-1].startswith("FAIL  negatives/round-1.parquet: sha256 ")
    assert f"checkpoints/round-1/{MANIFEST} records {sha256_file(path)}" in lines[-1]
    assert not any(line.startswith("FAIL") for line in lines[:-1])  # it stops at the first mismatch


@pytest.mark.parametrize("rel", ["checkpoints/round-0/model.safetensors", "checkpoints/bm25neg/2_Dense/model.safetensors"])
def test_one_changed_byte_of_a_weight_file_fails_naming_it(results, rel):
    with flipped(results / rel):
        code, lines = check(results)
    assert code == 1 and lines[-1].startswith(f"FAIL  {rel}: sha256 ")
    assert f"but checkpoints/{rel.split('/')[1]}/{MANIFEST} records" in lines[-1]


def test_a_retrained_parent_breaks_its_childrens_link(results):
    """round-0 made again (new weights, its own new manifest): round-1 trained from the old one."""
    folder = results / "checkpoints/round-0"
    old = read_manifest(folder)["weights"]["sha256"]
    (folder / "model.safetensors").write_bytes(b"retrained")
    write_checkpoint_manifest(folder, **{k: v for k, v in read_manifest(folder).items()
                                         if k not in ("format", "created", "weights")})
    code, lines = check(results)
    assert code == 1
    assert lines[-1] == (f"FAIL  checkpoints/round-0: sha256 {read_manifest(folder)['weights']['sha256']}, but "
                         f"checkpoints/round-1/{MANIFEST} records its parent's as {old}")


def test_the_mining_checkpoint_must_be_the_one_recorded(results):
    """negatives/round-1.json names round-0 by hash; a changed hash there is a broken link."""
    stats_path = results / "negatives/round-1.json"
    stats = json.loads(stats_path.read_text())
    stats["mining"]["checkpoint_sha256"] = "0" * 64
    stats_path.write_text(json.dumps(stats))
    # The JSON itself no longer matches what round-1 recorded of it: that is reported first.
    code, lines = check(results)
    assert code == 1 and lines[-1].startswith("FAIL  negatives/round-1.json: sha256 ")
    # With round-1 (its consumer) gone, the JSON's own link is followed and fails.
    shutil.rmtree(results / "checkpoints/round-1")
    code, lines = check(results)
    assert code == 1
    assert lines[-1].startswith(f"FAIL  checkpoints/round-0: sha256 {read_manifest(results / 'checkpoints/round-0')['weights']['sha256']}, "
                                f"but negatives/round-1.json records {'0' * 64} as the checkpoint that mined "
                                "negatives/round-1.parquet")


def test_an_existing_intermediate_run_that_differs_fails(results):
    with flipped(results / "runs/bm25/train.trec", offset=3):
        code, lines = check(results)
    assert code == 1
    assert lines[-1].startswith("FAIL  runs/bm25/train.trec: sha256 ")
    assert "but negatives/round-0.json records" in lines[-1]


def test_the_pretrained_model_is_hashed_when_it_is_here(results, tmp_path):
    with flipped(tmp_path / "models/tiny/config.json", offset=1):
        code, lines = check(results)
    assert code == 1 and lines[-1].startswith(f"FAIL  {tmp_path / 'models/tiny/config.json'}: sha256 ")
    shutil.rmtree(tmp_path / "models")
    code, lines = check(results)
    assert code == 0 and any(line.startswith("skip  checkpoints/zeroshot <- org/tiny:") for line in lines)


def test_missing_added_and_unrecorded(results):
    extra = results / "checkpoints/round-1/extra.bin"
    extra.write_bytes(b"x")
    code, lines = check(results)
    assert code == 1 and lines[-1] == f"FAIL  checkpoints/round-1/extra.bin: not in checkpoints/round-1/{MANIFEST} " \
                                      "(a file added after the checkpoint was made)"
    extra.unlink()
    (results / "checkpoints/bm25neg/config.json").unlink()
    code, lines = check(results)
    assert code == 1 and lines[-1].startswith("FAIL  checkpoints/bm25neg/config.json: missing, but")
    (results / f"checkpoints/bm25neg/{MANIFEST}").unlink()
    code, lines = check(results)
    assert code == 1 and lines[-1].startswith(f"FAIL  checkpoints/bm25neg/{MANIFEST}: missing")


def test_negatives_without_provenance_fail(results):
    """A negatives JSON from before provenance was recorded cannot link the chain to BM25."""
    for n in (0, 1):
        path = results / f"negatives/round-{n}.json"
        path.write_text(json.dumps({k: v for k, v in json.loads(path.read_text()).items()
                                    if k not in ("mined_with", "mining")}))
    for system in ("round-0", "round-1", "bm25neg"):
        shutil.rmtree(results / f"checkpoints/{system}")
    code, lines = check(results)
    assert code == 1 and lines[-1] == ("FAIL  negatives/round-0.json: does not record what mined "
                                       "negatives/round-0.parquet (made before provenance was recorded; re-run its "
                                       "mining job)")


def test_folder_hash_is_sha256sum_of_the_listing(results):
    """The manifest's folder hash can be recomputed with coreutils (the module doc's command)."""
    if not shutil.which("sha256sum"):
        pytest.skip("no sha256sum")
    folder = results / "checkpoints/round-1"
    cmd = ("find . -type f ! -name manifest.json ! -path '*/.*' | sed 's|^\\./||' | LC_ALL=C sort "
           "| xargs -d '\\n' sha256sum | sha256sum")
    shell = subprocess.run(cmd, shell=True, cwd=folder, capture_output=True, text=True, check=True).stdout.split()[0]
    assert shell == read_manifest(folder)["weights"]["sha256"] == tree_digest(hash_tree(folder))


def test_command_line(results, tmp_path):
    run = [sys.executable, "-m", "anceflow.verify"]
    proc = subprocess.run([*run, str(results)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.splitlines()[-1].startswith("verified 4 checkpoints")
    with flipped(results / "negatives/round-0.parquet"):
        proc = subprocess.run([*run, str(results)], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1 and proc.stdout.splitlines()[-1].startswith("FAIL  negatives/round-0.parquet:")
    proc = subprocess.run([*run, str(tmp_path / "nothing")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 2 and "no checkpoints/<system>/ folders" in proc.stdout


def test_training_writes_the_manifest(small_data, tiny_model, tmp_path):
    """train() and init_checkpoint() record hashes, settings, code, packages, device, steps, time."""
    from anceflow.digest import source_digest
    from anceflow.model import EncoderSpec
    from anceflow.train import TrainSettings, init_checkpoint, train

    root = tmp_path / "results/x"
    zeroshot = root / "checkpoints/zeroshot"
    init_checkpoint(str(tiny_model), EncoderSpec("cls", "linear_layernorm", "dot"), zeroshot, seed=1,
                    model_name="tiny")
    negatives = root / "negatives/round-0.parquet"
    negatives.parent.mkdir(parents=True)
    shutil.copyfile(small_data["negatives"], negatives)
    negatives.with_suffix(".json").write_text(json.dumps({"mined_with": "bm25", "mining": {"bm25": {"k1": 0.9}}}))
    s = TrainSettings(init=str(zeroshot), negatives=str(negatives), query_tokens=str(small_data["train_queries"]),
                      corpus_tokens=str(small_data["corpus"]), out_dir=str(root / "checkpoints/round-0"),
                      log_csv=str(root / "train/round-0.log.csv"), state_dir=str(root / "state/round-0"), steps=3,
                      batch_size=4, threads=1, save_optimizer=True)
    train(s, progress=False)
    first, second = read_manifest(zeroshot), read_manifest(root / "checkpoints/round-0")
    assert first["parent"]["name"] == "tiny" and first["parent"]["sha256"] == tree_digest(hash_tree(tiny_model))
    assert first["steps"] == 0 and first["config"]["spec"]["head"] == "linear_layernorm"
    assert second["parent"] == {"path": "checkpoints/zeroshot", "system": "zeroshot", "sha256": first["weights"]["sha256"]}
    assert second["negatives"]["path"] == "negatives/round-0.parquet"
    assert second["negatives"]["sha256"] == sha256_file(negatives) and second["negatives"]["mined_with"] == "bm25"
    assert "optimizer.pt" in second["weights"]["files"]  # written inside the folder before it appeared
    assert second["weights"]["sha256"] == tree_digest(hash_tree(root / "checkpoints/round-0"))
    assert second["config"]["steps"] == 3 and second["config"]["batch_size"] == 4
    assert second["code_digest"] == source_digest() and second["packages"]["torch"]
    assert second["device"]["type"] == "cpu" and second["device"]["processes"] == 1
    assert second["steps"] == 3 and second["train_seconds"] > 0 and second["job_seconds"] >= second["train_seconds"]
    # The next round carries the optimizer state: recorded by hash (taken from its parent's listing).
    train(TrainSettings(**{**asdict(s), "init": s.out_dir, "out_dir": str(root / "checkpoints/round-1"),
                           "init_optimizer": str(root / "checkpoints/round-0/optimizer.pt"), "save_optimizer": False,
                           "state_dir": str(root / "state/round-1")}), progress=False)
    third = read_manifest(root / "checkpoints/round-1")
    assert third["optimizer_from"] == {"path": "checkpoints/round-0/optimizer.pt",
                                       **second["weights"]["files"]["optimizer.pt"]}
    code, lines = check(root)
    assert code == 0, "\n".join(lines)
    assert "ok    checkpoints/round-0/optimizer.pt: the optimizer state checkpoints/round-1 started from" in "\n".join(lines)


# -- end to end: the tiny demo through Snakemake ------------------------------------------------------

@pytest.fixture(scope="module")
def demo_results(demo_run) -> Path:
    """The shared tiny demo run's results folder (intermediate files kept)."""
    return demo_run / "results/demo"


def test_demo_records_what_mined_each_round(demo_results):
    zero = json.loads((demo_results / "negatives/round-0.json").read_text())
    assert zero["mined_with"] == "bm25" and zero["mining"]["bm25"] == {"k1": 0.9, "b": 0.4, "topk": 200}
    assert zero["mining"]["run"] == "runs/bm25/train.trec" and len(zero["mining"]["run_sha256"]) == 64
    for n in (1, 2):
        stats = json.loads((demo_results / f"negatives/round-{n}.json").read_text())
        assert stats["mined_with"] == f"round-{n - 1}"  # staleness 0
        assert stats["mining"]["checkpoint_sha256"] == read_manifest(
            demo_results / f"checkpoints/round-{n - 1}")["weights"]["sha256"]
    parents = {s: read_manifest(demo_results / f"checkpoints/{s}")["parent"].get("system")
               for s in ("zeroshot", "round-0", "round-1", "round-2", "bm25neg")}
    assert parents == {"zeroshot": None, "round-0": "zeroshot", "round-1": "round-0", "round-2": "round-1",
                       "bm25neg": "round-0"}


def test_verify_passes_on_the_demo_and_fails_on_one_changed_byte(demo_results):
    code, lines = check(demo_results)
    assert code == 0, "\n".join(lines)
    assert lines[-1].startswith("verified 5 checkpoints:")
    # Only runs deleted once used may be skipped (said, not failed); this run kept them.
    skipped = [line for line in lines if line.startswith("skip")]
    assert all("runs/" in line and "not recomputed" in line for line in skipped)
    with flipped(demo_results / "negatives/round-1.parquet"):
        code, lines = check(demo_results)
    assert code == 1 and lines[-1].startswith("FAIL  negatives/round-1.parquet: sha256 "), lines[-1]
    with flipped(demo_results / "checkpoints/round-1/model.safetensors"):
        code, lines = check(demo_results)
    assert code == 1 and lines[-1].startswith("FAIL  checkpoints/round-1/model.safetensors: sha256 "), lines[-1]
    assert check(demo_results)[0] == 0  # restored
