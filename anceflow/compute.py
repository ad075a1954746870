"""Compute per round: CPU-hours and GPU-hours of every job, attributed to the round it served.

Every job-running rule writes a Snakemake benchmark file, ``benchmarks/<rule>.<wildcards>.tsv``
(wall seconds ``s`` and the process tree's ``cpu_time``). A job's CPU-hours are its cpu_time; its
GPU-hours are its wall time times the GPUs the job asked for (the SLURM profile's ``gpu``
resource; 0 when run without GPUs). Jobs are attributed to what they served:

* ``round-<n>``: the training of round n, the mining of its negatives, and the encoding, search
  and evaluation of checkpoint round-n (its search also mines for round n+1: charged here, where
  the vectors were made);
* ``bm25neg``: the control's training, encoding, search and evaluation;
* ``shared``: everything every system uses or that is not trained (download, preparation,
  tokenization, BM25, the zero-shot model).

Cumulative compute through round n is ``shared`` plus rounds 0..n; through the control, ``shared``
plus round 0 plus ``bm25neg`` (it starts from round 0).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Mapping

import pandas as pd

from anceflow.io import atomic_path

COLUMNS = ["part", "jobs", "wall_hours", "cpu_hours", "gpu_hours", "cumulative_cpu_hours", "cumulative_gpu_hours"]


def attribute(name: str) -> tuple[str, str]:
    """(rule, part) of a benchmark file name ``<rule>.<wildcards...>.tsv``."""
    parts = name.removesuffix(".tsv").split(".")
    rule, rest = parts[0], parts[1:]
    if rule == "train_control":
        return rule, "bm25neg"
    if rule in ("train", "mine_negatives", "audit_negatives") and rest:
        return rule, rest[0]
    system = next((p for p in rest if re.fullmatch(r"round-\d+|bm25neg", p)), None)
    return rule, system or "shared"


def read_benchmarks(files: Iterable[str | Path], gpus: Mapping[str, float]) -> pd.DataFrame:
    """One row per job: rule, part, wall seconds, CPU seconds, GPU seconds."""
    rows = []
    for path in files:
        path = Path(path)
        table = pd.read_csv(path, sep="\t")
        if not len(table):
            continue
        row = table.iloc[-1]  # a repeated benchmark (--benchmark-repeats): the last
        rule, part = attribute(path.name)
        wall = float(row["s"])
        cpu = pd.to_numeric(row.get("cpu_time", 0.0), errors="coerce")
        rows.append({"rule": rule, "part": part, "wall_s": wall, "cpu_s": 0.0 if pd.isna(cpu) else float(cpu),
                     "gpu_s": wall * float(gpus.get(rule, 0) or 0)})
    return pd.DataFrame(rows, columns=["rule", "part", "wall_s", "cpu_s", "gpu_s"])


def compute_table(jobs: pd.DataFrame, rounds: int, control: bool) -> pd.DataFrame:
    """Per part (shared, round-0..N, bm25neg, total): jobs, hours, and cumulative hours."""
    order = ["shared", *[f"round-{n}" for n in range(rounds + 1)], *(["bm25neg"] if control else [])]
    sums = jobs.groupby("part")[["wall_s", "cpu_s", "gpu_s"]].sum().reindex(order, fill_value=0.0) / 3600
    counts = jobs.groupby("part").size().reindex(order, fill_value=0)
    out = pd.DataFrame({"part": order, "jobs": counts.values, "wall_hours": sums["wall_s"].values,
                        "cpu_hours": sums["cpu_s"].values, "gpu_hours": sums["gpu_s"].values})
    running = {"cpu": 0.0, "gpu": 0.0}
    cumulative = {"cpu": [], "gpu": []}
    for part, cpu, gpu in zip(out["part"], out["cpu_hours"], out["gpu_hours"]):
        if part == "bm25neg":  # starts from round 0: shared + round 0 + itself
            base = out.set_index("part").loc[["shared", "round-0"]]
            cumulative["cpu"].append(base["cpu_hours"].sum() + cpu)
            cumulative["gpu"].append(base["gpu_hours"].sum() + gpu)
            continue
        running["cpu"] += cpu
        running["gpu"] += gpu
        cumulative["cpu"].append(running["cpu"])
        cumulative["gpu"].append(running["gpu"])
    out["cumulative_cpu_hours"], out["cumulative_gpu_hours"] = cumulative["cpu"], cumulative["gpu"]
    total = {"part": "total", "jobs": int(out["jobs"].sum()), "wall_hours": out["wall_hours"].sum(),
             "cpu_hours": out["cpu_hours"].sum(), "gpu_hours": out["gpu_hours"].sum(),
             "cumulative_cpu_hours": out["cpu_hours"].sum(), "cumulative_gpu_hours": out["gpu_hours"].sum()}
    return pd.concat([out, pd.DataFrame([total])], ignore_index=True)[COLUMNS]


def write_compute(path: str | Path, table: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False, float_format="%.4f")
