"""dataset.source ir_datasets at MS MARCO passage's size: time, peak memory and disk of the export.

Synthetic files with MS MARCO passage's counts (times ``--scale``) where ir_datasets keeps what it
makes from the downloads (IR_DATASETS_HOME/msmarco-passage: collection.tsv of 8,841,823 passages of
~330 characters, train/queries.tsv 808,731, train/qrels 532,761, dev/small 6,980 queries with 7,437
judgments and dev/ms.run, top1000.dev's 6,668,967 lines), then ``python -m anceflow.irds`` exports
train/judged and dev/small (with candidates) in a fresh process, whose time and peak RSS are reported.
The download and ir_datasets' own first extraction (collectionandqueries.tar.gz, 1 GB) are not in it.

    python bench/irds_export.py [--scale 0.05]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, Figures, add_record_args

FULL = {"passages": 8_841_823, "train_queries": 808_731, "judged": 502_939, "positives": 532_761,
        "dev_queries": 6_980, "dev_qrels": 7_437, "candidates": 6_668_967}
WORDS = "the of and a to in is for on that with as was by are at from be this an which or it".split() + \
    [f"w{i}" for i in range(5000)]


def text(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choices(WORDS, k=n_words))


def build(base: Path, n: dict, rng: random.Random) -> None:
    (base / "train").mkdir(parents=True)
    (base / "dev/small").mkdir(parents=True)
    (base / "irds_version.txt").write_text("v2")
    with open(base / "collection.tsv", "w") as fh:
        for pid in range(n["passages"]):
            fh.write(f"{pid}\t{text(rng, 56)}\n")  # ~330 characters, MS MARCO's mean
    with open(base / "train/queries.tsv", "w") as fh:
        for qid in range(n["train_queries"]):
            fh.write(f"{qid}\t{text(rng, 6)}\n")
    with open(base / "train/qrels", "w") as fh:
        for i in range(n["positives"]):
            fh.write(f"{i % n['judged']}\t0\t{rng.randrange(n['passages'])}\t1\n")
    dev = range(10_000_000, 10_000_000 + n["dev_queries"])
    (base / "dev/small/queries.tsv").write_text("".join(f"{q}\t{text(rng, 6)}\n" for q in dev))
    with open(base / "dev/small/qrels", "w") as fh:
        for i in range(n["dev_qrels"]):
            fh.write(f"{dev[i % len(dev)]}\t0\t{rng.randrange(n['passages'])}\t1\n")
    per_query = max(1, n["candidates"] // len(dev))
    with open(base / "dev/ms.run", "w") as fh:
        for q in dev:
            for _ in range(per_query):
                fh.write(f"{q}\t{rng.randrange(n['passages'])}\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=0.05)
    add_record_args(ap)
    args = ap.parse_args()
    n = {k: max(1, int(v * args.scale)) for k, v in FULL.items()}
    n["dev_queries"], n["dev_qrels"] = FULL["dev_queries"], FULL["dev_qrels"]  # small: kept whole
    n["candidates"] = int(FULL["candidates"] * args.scale)
    out = Figures("irds-export", "ir_datasets export at MS MARCO passage's size")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        tmp = Path(tmp)
        build(tmp / "home/msmarco-passage", n, random.Random(0))
        made = sum(f.stat().st_size for f in (tmp / "home").rglob("*") if f.is_file())
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "anceflow.irds", str(tmp / "out"), "train=msmarco-passage/train/judged",
                        "dev=msmarco-passage/dev/small", "--candidates", "dev", "--no-progress"], cwd=REPO, check=True,
                       env={**os.environ, "IR_DATASETS_HOME": str(tmp / "home")}, capture_output=True)
        seconds = time.perf_counter() - start
        rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        written = sum(f.stat().st_size for f in (tmp / "out").iterdir())
    factor = FULL["passages"] / n["passages"]
    out(f"scale {args.scale}: {n['passages']:,} passages, {n['train_queries']:,} training queries, "
        f"{n['candidates']:,} candidates")
    out(f"ir_datasets' files {made / 1e6:,.0f} MB -> export {written / 1e6:,.0f} MB in {seconds:.1f} s "
        f"({n['passages'] / seconds:,.0f} passages/s overall), peak RSS {rss:,.0f} MB")
    out(f"at full size (linear): ~{seconds * factor / 60:.0f} min, export ~{written * factor / 1e9:.1f} GB "
        f"(peak RSS grows only with the training query ids held: 808,731)")
    out.record(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
