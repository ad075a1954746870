"""Peak memory of corpus tokenization at 1x and 4x SciFact (replicated with new ids).

Tokenization streams batches into memory-mapped outputs, so peak RSS should stay flat as the
corpus grows. Each size runs in a fresh subprocess; its peak RSS is read from getrusage.

    python bench/tokenize_memory.py [--dataset ../shared/datasets/scifact] [--factors 1 4]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CHILD = """
import json, resource, sys, time
from anceflow.tokenize import tokenize_corpus
t = time.time()
stats = tokenize_corpus(sys.argv[1], sys.argv[2], "sentence-transformers/all-MiniLM-L6-v2", max_len=256, progress=False)
print(json.dumps({"seconds": time.time() - t, "tokens": stats["tokens"], "rows": stats["rows"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def replicate(src: Path, dst: Path, factor: int) -> None:
    dst.mkdir(parents=True)
    lines = (src / "collection.tsv").read_text(encoding="utf-8").splitlines()
    with open(dst / "collection.tsv", "w", encoding="utf-8") as fh:
        for copy in range(factor):
            for line in lines:
                pid, text = line.split("\t", 1)
                fh.write(f"{pid}-{copy}\t{text}\n" if copy else f"{line}\n")
    for split in ("dev",):
        (dst / f"queries.{split}.tsv").write_text((src / f"queries.{split}.tsv").read_text())
        (dst / f"qrels.{split}.tsv").write_text((src / f"qrels.{split}.tsv").read_text())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=str(REPO.parent / "shared/datasets/scifact"))
    ap.add_argument("--factors", type=int, nargs="+", default=[1, 4])
    args = ap.parse_args()
    from anceflow.prepare import prepare_local

    with tempfile.TemporaryDirectory() as tmp:
        for factor in args.factors:
            src = Path(tmp) / f"x{factor}"
            replicate(Path(args.dataset), src, factor)
            prepare_local(src, src / "prep", ["dev"], progress=False)
            out = subprocess.run([sys.executable, "-c", CHILD, str(src / "prep/collection.parquet"), str(src / "tok")],
                                 capture_output=True, text=True, check=True, cwd=REPO).stdout.strip().splitlines()[-1]
            r = json.loads(out)
            size_mb = sum(p.stat().st_size for p in src.glob("tok.*")) / 2**20
            print(f"{factor}x SciFact: {r['rows']} docs, {r['tokens']} tokens, {r['seconds']:.1f} s, "
                  f"peak RSS {r['peak_rss_mb']:.0f} MB, outputs {size_mb:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
