"""MS MARCO presets dry-run for a cluster: the DAG's shape and per-rule resources from the slurm profile."""

import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO

GPU_RULES = {"train", "encode_corpus", "encode_queries", "build_index", "dense_search"}
CPU_RULES = {"download_msmarco", "prepare", "tokenize_corpus", "tokenize_queries", "bm25_index", "bm25_search"}
PRESETS = ["msmarco-passage", "msmarco-doc-firstp", "msmarco-doc-maxp"]


def dry_run_jobs(preset: str, workdir) -> list[tuple[str, dict]]:
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir), "-n",
         "--workflow-profile", str(REPO / "profiles/slurm"), "--configfile", str(REPO / f"config/{preset}.yaml")],
        cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-4000:]
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", proc.stdout):
        head = re.match(r"(?:local)?rule (\w+):", block)
        res = re.search(r"^\s+resources: (.*)$", block, re.M)
        if head:
            resources = dict(re.findall(r"(\w+)=([^,]+)", res.group(1))) if res else {}
            jobs.append((head.group(1), resources))
    return jobs


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_dag_and_resources(preset, tmp_path):
    config = yaml.safe_load((REPO / f"config/{preset}.yaml").read_text())
    jobs = dry_run_jobs(preset, tmp_path)
    counts = {}
    for rule, resources in jobs:
        counts[rule] = counts.get(rule, 0) + 1
        if rule in GPU_RULES:
            assert resources.get("gpu") == "1", (rule, resources)
        if rule in CPU_RULES:
            assert "gpu" not in resources, (rule, resources)
            assert int(resources["mem_mb"]) >= 1000 and int(resources["cpus_per_task"]) >= 1
    rounds = config["ance"]["rounds"]
    shards = config["encode"]["shards"]
    assert counts["download_msmarco"] == 1
    assert counts["train"] == rounds + 1
    assert counts["mine_negatives"] == rounds
    systems = rounds + 2  # zeroshot, round-0 .. round-N
    assert counts["encode_corpus"] == shards * systems
    assert counts["evaluate"] == (systems + 1) * len(config["dataset"]["eval_splits"])
    train = next(r for rule, r in jobs if rule == "train")
    assert int(train["runtime"]) >= 1440 and int(train["cpus_per_task"]) >= 4
