"""`snakemake --profile slurm` after the opt-in install step, with a site's values."""

import os
import subprocess
import sys

import yaml

from anceflow import profile
from conftest import REPO


def test_install_writes_user_profile_with_site_values(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    path = profile.install(account="proj1", partition="gpu", gpu_model="a100", qos="high")
    written = yaml.safe_load(path.read_text())
    assert path == tmp_path / "cfg/snakemake/slurm/config.yaml"
    assert written["default-resources"]["slurm_account"] == "proj1"
    assert written["default-resources"]["slurm_partition"] == "gpu"
    assert written["set-resources"]["train"]["gpu_model"] == "a100"
    assert "gpu_model" not in written["set-resources"]["prepare"]
    assert written["slurm-qos"] == "high" and written["executor"] == "slurm"
    assert profile.main(["install"]) == 1  # exists: not overwritten without --force
    assert profile.main(["install", "--force"]) == 0
    assert yaml.safe_load(path.read_text())["slurm-no-account"] is True


def test_cpu_partition_takes_the_jobs_without_a_gpu(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    written = yaml.safe_load(profile.install(partition="gpu", cpu_partition="cpu", gpu_model="h100").read_text())
    assert written["default-resources"]["slurm_partition"] == "cpu"
    gpus = profile.gpu_rules(written)
    assert {"train", "encode_corpus", "dense_search"} <= set(gpus) and "prepare" not in gpus
    for rule, res in written["set-resources"].items():
        assert res.get("slurm_partition") == ("gpu" if rule in gpus else None), rule
        assert (res.get("gpu_model") == "h100") == (rule in gpus), rule


def test_snakemake_finds_the_installed_profile_by_name(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "HOME": str(home)}
    env.pop("XDG_CONFIG_HOME", None)
    subprocess.run([sys.executable, "-m", "anceflow.profile", "install", "--partition", "gpu"], cwd=REPO, env=env,
                   check=True, capture_output=True)
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory",
                           str(tmp_path / "wd"), "--profile", "slurm", "-n", "--configfile",
                           str(REPO / "config/msmarco-passage.yaml")], cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    train = proc.stdout.split("rule train:", 1)[1].split("\n\n", 1)[0]
    assert "slurm_partition=gpu" in train and "gpu=1" in train


def test_local_profile_gives_every_multithreaded_rule_one_thread():
    """profiles/local (README's Quickstart) lists exactly the rules that ask for more than one thread,
    with one each, so that a rule added later cannot silently run alone on a small machine."""
    import re

    threads, parent = {}, {}
    for smk in sorted((REPO / "rules").glob("*.smk")):
        rule = None
        for line in smk.read_text().splitlines():
            if m := re.match(r"(?:rule|checkpoint) (\w+):", line):
                rule = m.group(1)
            elif m := re.match(r"use rule (\w+) as (\w+)", line):
                rule, parent[m.group(2)] = m.group(2), m.group(1)
            elif rule and (m := re.match(r"\s+threads:\s*(\d+)", line)):
                threads[rule] = int(m.group(1))
    for child, base in parent.items():
        threads.setdefault(child, threads.get(base, 1))
    many = {rule for rule, n in threads.items() if n > 1}
    assert {"train", "train_control", "encode_corpus", "dense_search_mining", "bm25_search_train"} <= many
    local = yaml.safe_load((REPO / "profiles/local/config.yaml").read_text())
    assert local["set-threads"] == {rule: 1 for rule in sorted(many)}
