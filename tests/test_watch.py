"""anceflow.watch: one terminal following every running job's log."""

import io
import os
import time

from anceflow.watch import Follower, log_files


def test_follows_recent_logs_everywhere_jobs_write_them(tmp_path):
    files = {
        "results/demo/logs/train.round-1.log": "step 1\nstep 2\n",
        "results/demo/tokens/minilm.q64.d256/logs/tokenize_corpus.log": "tokenizing\n",
        "resources/logs/fetch_model.minilm.log": "fetched\n",
        ".snakemake/slurm_logs/rule_train/4242.log": "slurm says hi\n",
        "results/demo/logs/prepare.log": "long ago\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    old = time.time() - 7200
    os.utime(tmp_path / "results/demo/logs/prepare.log", (old, old))
    assert {p.relative_to(tmp_path).as_posix() for p in log_files(tmp_path)} == set(files)

    follower = Follower(tmp_path, since=600, results="results", downloads="resources")
    out = io.StringIO()
    follower.poll(out)
    shown = out.getvalue()
    for name in set(files) - {"results/demo/logs/prepare.log"}:
        assert f"==> {name} <==" in shown
    assert "step 2" in shown and "slurm says hi" in shown and "long ago" not in shown

    # New text, a progress bar redrawn with \r, and a job that starts later.
    with open(tmp_path / "results/demo/logs/train.round-1.log", "a") as fh:
        fh.write("train: 10%\rtrain: 50%\rtrain: 90%\nstep 3\n")
    (tmp_path / "results/demo/logs/encode_corpus.round-1.0.log").write_text("encoding\n")
    (tmp_path / "results/demo/logs/prepare.log").write_text("")  # a retry starts its log afresh
    out = io.StringIO()
    assert follower.poll(out) == 3
    shown = out.getvalue()
    assert "train: 90%" in shown and "train: 10%" not in shown and "step 3" in shown and "encoding" in shown
    assert "step 1" not in shown  # already shown
    out = io.StringIO()
    assert follower.poll(out) == 0 and out.getvalue() == ""
