"""What the workflow-driving bench scripts share: their arguments and running Snakemake targets."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "bench/configs/scifact-minilm.yaml"


def parse_args(doc: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(DEFAULT_CONFIG))
    ap.add_argument("--cores", default="2")
    return ap.parse_args()


def run_targets(args: argparse.Namespace, *targets: str) -> Path:
    """Run the workflow's targets with the bench config; return that dataset's results folder."""
    subprocess.run([sys.executable, "-m", "snakemake", *targets, "--cores", args.cores, "--configfile", args.config],
                   cwd=REPO, check=True)
    return REPO / "results" / yaml.safe_load(Path(args.config).read_text())["dataset"]["name"]
