"""anceflow.compute: CPU-hours and GPU-hours per round from Snakemake's benchmark files."""

import pandas as pd
import pytest

from anceflow.compute import attribute, compute_table, read_benchmarks

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def test_jobs_are_charged_to_the_round_they_served():
    assert attribute("train.round-2.tsv") == ("train", "round-2")
    assert attribute("train_control.tsv") == ("train_control", "bm25neg")
    assert attribute("mine_negatives.round-1.tsv") == ("mine_negatives", "round-1")
    assert attribute("encode_corpus.round-0.1.tsv") == ("encode_corpus", "round-0")
    assert attribute("dense_search_mining.round-1.tsv") == ("dense_search_mining", "round-1")
    assert attribute("evaluate_rerank.bm25neg.dev.tsv") == ("evaluate_rerank", "bm25neg")
    assert attribute("encode_queries.zeroshot.dev.tsv") == ("encode_queries", "shared")
    assert attribute("bm25_search_train.train.tsv") == ("bm25_search_train", "shared")


def test_hours_per_round_and_cumulative(tmp_path):
    jobs = {"prepare.tsv": (100, 90), "train.round-0.tsv": (3600, 7000), "encode_corpus.round-0.0.tsv": (1800, 3000),
            "train.round-1.tsv": (1800, 3500), "train_control.tsv": (1800, 3400), "evaluate.round-1.dev.tsv": (36, 30)}
    for name, (wall, cpu) in jobs.items():
        (tmp_path / name).write_text(HEADER + f"{wall}\t0\t1\t1\t1\t1\t0\t0\t1\t{cpu}\n")
    table = read_benchmarks(sorted(tmp_path.glob("*.tsv")), {"train": 1, "train_control": 2, "encode_corpus": 1})
    out = compute_table(table, rounds=1, control=True).set_index("part")
    assert out.index.tolist() == ["shared", "round-0", "round-1", "bm25neg", "total"]
    assert out.loc["round-0", "gpu_hours"] == pytest.approx(1.5) and out.loc["round-0", "jobs"] == 2
    assert out.loc["round-0", "cpu_hours"] == pytest.approx(10_000 / 3600)
    assert out.loc["bm25neg", "gpu_hours"] == pytest.approx(1.0)  # 1800 s on 2 GPUs
    assert out.loc["round-1", "cumulative_gpu_hours"] == pytest.approx(2.0)
    assert out.loc["bm25neg", "cumulative_gpu_hours"] == pytest.approx(1.5 + 1.0)  # shared + round 0 + itself
    assert out.loc["total", "gpu_hours"] == pytest.approx(3.0) and out.loc["total", "jobs"] == 6
    assert out.loc["shared", "gpu_hours"] == 0 and out.loc["shared", "cpu_hours"] == pytest.approx(90 / 3600)
