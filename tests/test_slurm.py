"""The workflow on a real SLURM (loopback, tests/slurm/cluster.py) through the slurm profile.

Opt-in: `python -m pytest -m slurm` (what .ci/run does after installing slurm-wlm and munge).
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, duplicate_pid_folder

sys.path.insert(0, str(Path(__file__).parent / "slurm"))
import cluster  # noqa: E402

pytestmark = pytest.mark.slurm


@pytest.fixture(scope="module")
def slurm():
    if cluster.missing_tools():
        pytest.fail(f"SLURM is not installed (missing {cluster.missing_tools()}); .ci/run installs slurm-wlm and munge")
    cluster.start()
    yield
    cluster.stop()


def run_on_slurm(workdir: Path, config: dict, *targets: str, extra_profile: dict | None = None, check: bool = True):
    """snakemake with the repo's slurm profile plus the test overlay (which takes precedence)."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    overlay = Path(__file__).parent / "slurm" / "profile"
    if extra_profile:
        from anceflow.config import deep_merge

        merged = deep_merge(yaml.safe_load((overlay / "config.yaml").read_text()), extra_profile)
        overlay = workdir / "profile"
        overlay.mkdir()
        (overlay / "config.yaml").write_text(yaml.safe_dump(merged))
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    cmd = [sys.executable, "-m", "snakemake", *targets, "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
           "--profile", str(REPO / "profiles/slurm"), "--workflow-profile", str(overlay),
           "--configfile", str(workdir / "config.yaml")]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    out = proc.stdout + proc.stderr
    if check:
        assert proc.returncode == 0, out[-8000:]
    return out


def submitted(output: str) -> dict[str, str]:
    """{snakemake job id: SLURM job id} from the executor's log lines."""
    return dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", output))


def tiny_config(tiny_model: Path, **over) -> dict:
    config = {
        "dataset": {"name": "demo", "source": "demo", "demo": {"passages": 300, "train_queries": 60, "dev_queries": 30}},
        "model": {"name_or_path": str(tiny_model), "pooling": "cls", "head": "linear_layernorm", "similarity": "dot",
                  "max_query_len": 32, "max_doc_len": 64},
        "train": {"batch_size": 8, "lr": 1.0e-3, "save_every": 10},
        "warmup": {"steps": 20},
        "ance": {"rounds": 1, "steps_per_round": 10, "topk": 50, "negatives_per_query": 10},
        "encode": {"shards": 2, "batch_size": 32},
    }
    for key, value in over.items():
        config[key] = {**config[key], **value}
    return config


def test_demo_pipeline_runs_through_sbatch(slurm, tiny_model, tmp_path):
    """Every job goes through sbatch except the model fetch (from a loopback hub), which runs on the
    submit host: compute nodes may have no internet."""
    from fakehub import serve

    with serve("org/tiny-bert", tiny_model) as (url, _):
        out = run_on_slurm(tmp_path, tiny_config(tiny_model, model={"name_or_path": "org/tiny-bert", "hub_url": url}),
                           "all")
    jobs = submitted(out)
    job_rules = {}
    for block in re.split(r"\n(?=\[.*\]\n(?:local)?rule )", out):
        m = re.search(r"(local)?rule (\w+):.*?jobid: (\d+)", block, re.S)
        if m:
            job_rules[m.group(3)] = (m.group(2), bool(m.group(1)))
    remote = {j: r for j, (r, local) in job_rules.items() if not local}
    assert remote and set(remote) <= set(jobs), "every non-local job must go through sbatch"
    local = {r for r, is_local in job_rules.values() if is_local}
    assert "fetch_model" in local and "fetch_model" not in remote.values()
    print("\njob -> rule -> SLURM job id")
    for job, rule in sorted(remote.items(), key=lambda kv: int(kv[0])):
        print(f"  {job:>3} {rule:<16} {jobs[job]}")
    metrics = pd.read_csv(tmp_path / "results/demo/metrics.tsv", sep="\t")
    assert metrics["system"].tolist() == ["bm25", "zeroshot", "round-0", "round-1", "bm25neg"]
    logs = list((tmp_path / ".snakemake/slurm_logs").rglob("*.log"))
    assert {p.stem for p in logs} >= set(jobs.values())  # one log per SLURM job, named by its id


def test_training_stopped_at_its_time_limit_resumes(slurm, tiny_model, tmp_path):
    """SLURM's time limit sends SIGTERM: training saves, fails, is retried and resumes from its state."""
    config = tiny_config(tiny_model, warmup={"steps": 8000}, train={"save_every": 100})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    # Its inputs are made locally first, so only the training job goes through SLURM.
    tokens = "results/demo/tokens/" + Path(tiny_model).name + ".q32.d64"
    inputs = ["results/demo/negatives/round-0.parquet", "results/demo/checkpoints/zeroshot",
              f"{tokens}/corpus.tokens.npy", f"{tokens}/queries.train.tokens.npy"]
    subprocess.run([sys.executable, "-m", "snakemake", *inputs, "-s", str(REPO / "Snakefile"), "--cores", "2",
                    "--directory", str(tmp_path), "--configfile", str(tmp_path / "config.yaml")],
                   cwd=REPO, check=True, capture_output=True)
    profile = {"retries": 1, "set-resources": {"train": {"runtime": "1 if attempt == 1 else 30"}}}
    run_on_slurm(tmp_path, config, "results/demo/train/round-0.log.csv", extra_profile=profile)
    # Two SLURM jobs for the training: the first attempt, stopped at its time limit, and the retry.
    attempts = sorted((tmp_path / ".snakemake/slurm_logs/rule_train").rglob("*.log"), key=lambda p: int(p.stem))
    assert len(attempts) == 2, attempts
    assert "DUE TO TIME LIMIT" in attempts[0].read_text()
    # The retry's log (Snakemake starts a retry's log afresh) says where it resumed, and why.
    log = (tmp_path / "results/demo/logs/train.round-0.log").read_text()
    resumed = re.findall(r"resuming from step (\d+) of 8000 \(.*, saved on SIGTERM\)", log)
    assert resumed and int(resumed[0]) > 0, log[-3000:]
    steps = pd.read_csv(tmp_path / "results/demo/train/round-0.log.csv")["step"]
    assert steps.iloc[-1] == 8000 and steps.is_unique
    print(f"\ntraining stopped by SLURM's 1-minute time limit at step {resumed[0]} (SIGTERM, state saved); "
          f"the retry resumed from it. SLURM job ids: {', '.join(p.stem for p in attempts)}")


def test_bad_input_is_not_redone_by_the_profiles_retries(slurm, tmp_path):
    """The profile retries failed jobs (retries: 3, for time limits and lost nodes). A job that
    failed on bad input does its work once: each retry sees the same inputs, settings and code
    and fails at once with the first failure's message."""
    src = duplicate_pid_folder(tmp_path / "data")
    config = {"dataset": {"name": "bad", "source": "local", "path": str(src)}}
    out = run_on_slurm(tmp_path, config, "results/bad/prepared/stats.json", check=False)
    assert "Error in rule prepare" in out or "ERROR in rule prepare" in out, out[-4000:]
    attempts = sorted((tmp_path / ".snakemake/slurm_logs/rule_prepare").rglob("*.log"), key=lambda p: int(p.stem))
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    assert len(attempts) == 1 + profile["retries"], attempts
    texts = [p.read_text() for p in attempts]
    assert "ERROR in rule prepare (bad input)" in texts[0] and "duplicate pid '2'" in texts[0]
    for text in texts[1:]:
        assert "not run again" in text and "duplicate pid '2'" in text and "ERROR in rule prepare (bad input)" not in text
    print(f"\nprepare on bad input: {len(attempts)} SLURM jobs ({', '.join(p.stem for p in attempts)}); the work "
          "ran in the first, each retry stopped at once")
