"""MS MARCO presets dry-run for a cluster: the DAG's shape and per-rule resources from the slurm profile."""

import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO

GPU_RULES = {"train", "train_control", "encode_corpus", "encode_queries", "dense_search", "dense_search_mining"}
CPU_RULES = {"prepare", "tokenize_corpus", "tokenize_queries", "bm25_index", "bm25_search", "bm25_search_train",
             "bm25_negatives", "mine_negatives", "audit_negatives", "evaluate", "evaluate_bm25", "evaluate_rerank",
             "init_model", "metrics", "compare", "seed_metrics", "report"}
LOCAL_RULES = {"download_msmarco", "fetch_model", "fetch_cross_encoder"}
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
        elif rule not in LOCAL_RULES:
            assert rule in CPU_RULES | {"all"}, f"{rule}: neither a GPU, a CPU nor a local rule"
            assert "gpu" not in resources, (rule, resources)
            if rule != "all":
                assert int(resources["mem_mb"]) >= 1000 and int(resources["cpus_per_task"]) >= 1
    rounds = config["ance"]["rounds"]
    shards = config["encode"]["shards"]
    splits = config["dataset"]["eval_splits"]
    assert counts["download_msmarco"] == 1 and counts["fetch_model"] == 1
    assert counts["train"] == rounds + 1 and counts["train_control"] == 1
    assert counts["mine_negatives"] == rounds and counts["audit_negatives"] == rounds + 1
    systems = rounds + 3  # zeroshot, round-0 .. round-N, bm25neg
    assert counts["encode_corpus"] == shards * systems
    assert counts["dense_search"] + counts["dense_search_mining"] == systems
    assert counts["evaluate"] == systems * len(splits) and counts["evaluate_bm25"] == len(splits)
    assert counts["compare"] == 1
    assert counts["evaluate_rerank"] == systems * len(splits)  # every MS MARCO split has a candidate list
    assert "build_index" not in counts  # exact search reads the vectors; no index file
    train = next(r for rule, r in jobs if rule == "train")
    assert int(train["runtime"]) >= 1440 and int(train["cpus_per_task"]) >= 4


def test_profile_runtimes_do_not_grow_with_retries():
    """A retry asking for longer than a partition allows would pend forever; training resumes instead."""
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    for rule, res in {"default": profile["default-resources"], **profile["set-resources"]}.items():
        assert "attempt" not in str(res.get("runtime", "")), rule
    assert profile["retries"] >= 2
