"""dataset.source ir_datasets (anceflow.irds), offline.

ir_datasets reuses the files it finds in its cache, IR_DATASETS_HOME, at the paths its dataset
definitions name (beir/scifact/source.zip: BEIR's zip; msmarco-passage/collection.tsv, dev/ms.run, ...).
The fixtures put small files of the real layouts there, so ir_datasets' own code (zip members,
docstore, query filters, qrels and run parsers) runs as it would on downloaded data. ir_datasets fixes
its cache paths when imported, so exports run in a subprocess with IR_DATASETS_HOME set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest

from anceflow import config as anceflow_config
from anceflow.prepare.demo import generate_demo
from conftest import REPO
from test_workflow import HEADER, planned_jobs, snakemake, tiny_demo_config, write_config


def _lines(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()]


def demo_source(root: Path, passages: int, train: int, dev: int) -> dict[str, list[list[str]]]:
    """Learnable demo data (collection, queries and qrels of train and dev) as rows."""
    generate_demo(root, seed=3, n_passages=passages, n_train=train, n_dev=dev)
    return {f.stem: _lines(f) for f in root.glob("*.tsv")}


def place_beir_scifact(home: Path, data: dict) -> dict:
    """BEIR's scifact.zip layout (scifact/corpus.jsonl, queries.jsonl, qrels/{train,test}.tsv with a
    header) where ir_datasets keeps it: <home>/beir/scifact/source.zip. Demo dev is BEIR's test."""
    docs = [{"_id": f"d{pid}", "title": " ".join(text.split()[:3]), "text": " ".join(text.split()[3:]),
             "metadata": {}} for pid, text in data["collection"]]
    docs[0]["text"] = "a tab\there and a\nnewline"
    docs[1]["title"] = ""
    queries = [{"_id": f"q{qid}", "text": text, "metadata": {}}
               for qid, text in data["queries.train"] + data["queries.dev"]]
    queries.append({"_id": "q-unjudged", "text": "never judged", "metadata": {}})

    def qrels(rows):
        return "query-id\tcorpus-id\tscore\n" + "".join(f"q{q}\td{p}\t{r}\n" for q, _, p, r in rows)

    (home / "beir/scifact").mkdir(parents=True)
    with zipfile.ZipFile(home / "beir/scifact/source.zip", "w") as zf:
        zf.writestr("scifact/corpus.jsonl", "".join(json.dumps(d) + "\n" for d in docs))
        zf.writestr("scifact/queries.jsonl", "".join(json.dumps(q) + "\n" for q in queries))
        zf.writestr("scifact/qrels/train.tsv", qrels(data["qrels.train"]))
        zf.writestr("scifact/qrels/test.tsv", qrels(data["qrels.dev"]))
    return {"docs": docs, "queries": queries}


def place_msmarco_passage(home: Path, data: dict) -> dict:
    """The files ir_datasets makes from MS MARCO's downloads, at its cache paths: collection.tsv,
    train/queries.tsv and train/qrels (with an unjudged query, as the real 808,731 vs 502,939),
    dev/small/{queries.tsv,qrels} and dev/ms.run (top1000.dev as qid, pid; here each query's relevant
    passages and the next 4, and one line for a query that dev/small does not have)."""
    base = home / "msmarco-passage"
    for sub in ("train", "dev/small"):
        (base / sub).mkdir(parents=True)
    (base / "irds_version.txt").write_text("v2")  # else ir_datasets' migration deletes collection.tsv
    (base / "collection.tsv").write_text("".join(f"{p}\t{t}\n" for p, t in data["collection"]))
    (base / "train/queries.tsv").write_text("".join(f"{q}\t{t}\n" for q, t in data["queries.train"]) + "555\tno judgment\n")
    (base / "train/qrels").write_text("".join("\t".join(r) + "\n" for r in data["qrels.train"]))
    (base / "dev/small/queries.tsv").write_text("".join(f"{q}\t{t}\n" for q, t in data["queries.dev"]))
    (base / "dev/small/qrels").write_text("".join("\t".join(r) + "\n" for r in data["qrels.dev"]))
    pids = [p for p, _ in data["collection"]]
    run = []
    for i, (q, _) in enumerate(data["queries.dev"]):
        relevant = [p for qid, _, p, _ in data["qrels.dev"] if qid == q]
        run += [(q, p) for p in relevant + [p for p in pids[i:i + 8] if p not in relevant][:4]]
    (base / "dev/ms.run").write_text("".join(f"{q}\t{p}\n" for q, p in run) + f"999999\t{pids[0]}\n")
    return {"run": run}


def export_cli(home: Path, out: Path, *ids: str, candidates=(), **env) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "anceflow.irds", str(out), *ids, "--no-progress"]
    if candidates:
        cmd += ["--candidates", *candidates]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "IR_DATASETS_HOME": str(home), **env})


@pytest.fixture
def irds_home(tmp_path, monkeypatch):
    """An empty IR_DATASETS_HOME; also for ir_datasets imported by this process (config checks)."""
    home = tmp_path / "irds-home"
    home.mkdir()
    monkeypatch.setenv("IR_DATASETS_HOME", str(home))
    return home


def test_export_beir_scifact_to_local_layout(tmp_path, irds_home):
    placed = place_beir_scifact(irds_home, demo_source(tmp_path / "src", 30, 6, 4))
    out = tmp_path / "out"
    proc = export_cli(irds_home, out, "train=beir/scifact/train", "test=beir/scifact/test")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "collection.tsv", "ir_datasets.json", "qrels.test.tsv", "qrels.train.tsv", "queries.test.tsv",
        "queries.train.tsv"]
    collection = _lines(out / "collection.tsv")
    assert collection[0] == ["d0", placed["docs"][0]["title"], "a tab here and a newline"]  # one line, 3 fields
    assert collection[1] == ["d1", "", placed["docs"][1]["text"]]
    assert [row[0] for row in collection] == [d["_id"] for d in placed["docs"]]
    # BEIR keeps all queries in one file; ir_datasets' split ids hold those their qrels judge.
    text = {q["_id"]: q["text"] for q in placed["queries"]}
    assert _lines(out / "queries.test.tsv") == [[f"q{i}", text[f"q{i}"]] for i in range(900000, 900004)]
    assert len(_lines(out / "queries.train.tsv")) == 6
    assert _lines(out / "qrels.test.tsv")[0] == ["q900000", "0", _lines(out / "qrels.test.tsv")[0][2], "1"]
    info = json.loads((out / "ir_datasets.json").read_text())
    assert info["ids"] == {"train": "beir/scifact/train", "test": "beir/scifact/test"}
    assert info["docs"] == "beir/scifact" and info["documents"]["columns"] == ["pid", "title", "text"]


def test_export_msmarco_passage_with_candidates(tmp_path, irds_home):
    data = demo_source(tmp_path / "src", 30, 6, 4)
    placed = place_msmarco_passage(irds_home, data)
    out = tmp_path / "out"
    proc = export_cli(irds_home, out, "train=msmarco-passage/train/judged", "dev=msmarco-passage/dev/small",
                      candidates=["dev"])
    assert proc.returncode == 0, proc.stderr
    assert _lines(out / "collection.tsv") == data["collection"]
    assert _lines(out / "queries.train.tsv") == data["queries.train"]  # train/judged: not the unjudged 555
    assert _lines(out / "qrels.dev.tsv") == data["qrels.dev"]
    # scoreddocs in ir_datasets' (the file's) order; the line for a query dev/small lacks is dropped.
    assert [tuple(r) for r in _lines(out / "candidates.dev.tsv")] == placed["run"]
    assert not (out / "candidates.train.tsv").exists()
    info = json.loads((out / "ir_datasets.json").read_text())
    assert info["splits"]["dev"]["candidates_dropped"] == 1
    assert info["documents"]["columns"] == ["pid", "text"]


def test_a_download_that_fails_names_the_id_and_the_cache_and_leaves_no_output(tmp_path, irds_home):
    # Nothing in the cache, and every request goes to a closed port (a proxy that is not there).
    proc = export_cli(irds_home, tmp_path / "out", "train=beir/nfcorpus/train", "test=beir/nfcorpus/test",
                      HTTPS_PROXY="http://127.0.0.1:9", HTTP_PROXY="http://127.0.0.1:9", IR_DATASETS_DL_TRIES="1")
    assert proc.returncode == 1
    assert "ir_datasets could not provide 'beir/nfcorpus/train' (split 'train': queries, qrels, scoreddocs)" \
        in proc.stderr
    assert f"IR_DATASETS_HOME={irds_home}" in proc.stderr
    assert not (tmp_path / "out").exists()


def _config(**dataset) -> dict:
    return {"dataset": {"name": "x", **dataset}}


def _problems(cfg: dict) -> str:
    with pytest.raises(anceflow_config.ConfigError) as err:
        anceflow_config.validate(cfg)
    return str(err.value)


def test_config_checks_ids_before_anything_runs(irds_home):
    good = {"train": "beir/scifact/train", "test": "beir/scifact/test"}
    anceflow_config.validate(_config(source="ir_datasets", ir_datasets=good, eval_splits=["test"]))

    msg = _problems(_config(source="ir_datasets", ir_datasets={**good, "dev": "beir/scifact/dev"}))
    assert ("config key 'dataset.ir_datasets.dev': 'beir/scifact/dev' is not an ir_datasets id (known ids near it: "
            "beir/scifact, beir/scifact/test, beir/scifact/train)") in msg

    msg = _problems(_config(source="ir_datasets", ir_datasets=good, eval_splits=["dev"]))
    assert "config key 'dataset.ir_datasets': no ir_datasets id for split(s) 'dev'" in msg

    msg = _problems(_config(source="ir_datasets", ir_datasets={"train": "beir/scifact/train",
                                                                "dev": "msmarco-passage/dev/small"}))
    assert ("the ids must share one document collection, they use 2: beir/scifact for train: beir/scifact/train; "
            "msmarco-passage for dev: msmarco-passage/dev/small") in msg

    msg = _problems(_config(source="ir_datasets", ir_datasets={"train": "msmarco-passage/train",
                                                                "dev": "msmarco-passage"}))
    assert "'dataset.ir_datasets.dev': 'msmarco-passage' has no queries and no qrels" in msg


# The workflow to metrics.tsv from ir_datasets (~2 min on 2 cores): -m slow, which .ci/run runs.
@pytest.mark.slow
def test_ir_datasets_source_through_snakemake_to_metrics(tmp_path, irds_home, tiny_model):
    """dataset.source ir_datasets end to end, offline: msmarco-passage/train/judged and dev/small (with its
    top1000 as candidates, so dense systems are also evaluated reranking them) to metrics.tsv."""
    data = demo_source(tmp_path / "src", 400, 80, 40)
    placed = place_msmarco_passage(irds_home, data)
    config = tiny_demo_config(tiny_model)
    config.update(dataset={"name": "irds", "source": "ir_datasets",
                           "ir_datasets": {"train": "msmarco-passage/train/judged", "dev": "msmarco-passage/dev/small"}},
                  ance={"rounds": 0})
    cfg = write_config(tmp_path / "irds.yaml", config)
    proc = snakemake("--configfile", str(cfg), workdir=tmp_path)
    assert "rule download_ir_datasets" in proc.stdout + proc.stderr
    res = tmp_path / "results/irds"
    metrics = pd.read_csv(res / "metrics.tsv", sep="\t")
    assert list(metrics.columns) == HEADER
    assert metrics[["system", "split", "ranking"]].values.tolist() == [
        ["bm25", "dev", "full"], ["zeroshot", "dev", "full"], ["zeroshot", "dev", "rerank"],
        ["round-0", "dev", "full"], ["round-0", "dev", "rerank"]]
    assert (metrics["queries"] == 40).all()
    # Every candidate list holds its query's relevant passages: reranking it finds all of them.
    assert (metrics.loc[metrics["ranking"] == "rerank", "recall@100"] == 1.0).all()
    stats = json.loads((res / "prepared/stats.json").read_text())
    assert stats["source"].startswith("resources/ir_datasets/msmarco-passage/")
    assert stats["splits"]["train"]["queries"] == 80
    assert stats["splits"]["dev"]["candidates"] == len(placed["run"])
    # The export's folder is named by the ids, so a second run finds it and has nothing to do.
    assert planned_jobs(snakemake("-n", "--configfile", str(cfg), workdir=tmp_path)) == {}


def test_beir_scifact_through_ir_datasets_prepares(tmp_path, irds_home):
    """The README's ir_datasets example (beir/scifact train and test) up to prepared parquet."""
    place_beir_scifact(irds_home, demo_source(tmp_path / "src", 30, 6, 4))
    cfg = write_config(tmp_path / "s.yaml", {"dataset": {
        "name": "scifact", "source": "ir_datasets", "eval_splits": ["test"],
        "ir_datasets": {"train": "beir/scifact/train", "test": "beir/scifact/test"}}})
    snakemake("results/scifact/prepared/stats.json", "--configfile", str(cfg), workdir=tmp_path)
    prep = tmp_path / "results/scifact/prepared"
    assert pd.read_parquet(prep / "collection.parquet").columns.tolist() == ["pid", "text", "title"]
    assert len(pd.read_parquet(prep / "queries.test.parquet")) == 4
    assert len(pd.read_parquet(prep / "candidates.test.parquet")) == 0
