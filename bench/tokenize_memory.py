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

from common import REPO, Figures, add_record_args, replicate_collection

CHILD = """
import json, resource, sys, time
from anceflow.tokenize import tokenize_corpus
t = time.time()
stats = tokenize_corpus(sys.argv[1], sys.argv[2], "sentence-transformers/all-MiniLM-L6-v2", max_len=256, progress=False)
print(json.dumps({"seconds": time.time() - t, "tokens": stats["tokens"], "rows": stats["rows"],
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default=str(REPO.parent / "shared/datasets/scifact"))
    ap.add_argument("--factors", type=int, nargs="+", default=[1, 4])
    add_record_args(ap)
    args = ap.parse_args()
    out = Figures("tokenize", "Tokenization: peak memory at 1x and 4x SciFact")
    from anceflow.prepare import prepare_local

    with tempfile.TemporaryDirectory() as tmp:
        for factor in args.factors:
            src = Path(tmp) / f"x{factor}"
            replicate_collection(Path(args.dataset), src, factor)
            prepare_local(src, src / "prep", ["dev"], progress=False)
            child = subprocess.run([sys.executable, "-c", CHILD, str(src / "prep/collection.parquet"), str(src / "tok")],
                                   capture_output=True, text=True, check=True, cwd=REPO)
            r = json.loads(child.stdout.strip().splitlines()[-1])
            size_mb = sum(p.stat().st_size for p in src.glob("tok.*")) / 2**20
            out(f"{factor}x SciFact: {r['rows']} docs, {r['tokens']} tokens, {r['seconds']:.1f} s, "
                f"peak RSS {r['peak_rss_mb']:.0f} MB, outputs {size_mb:.1f} MB")
    out.record(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
