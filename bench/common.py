"""What the bench scripts share: workflow runs, the machine description, and BENCHMARKS.md.

Each script prints its figures through a :class:`Figures` and then calls :meth:`Figures.record`,
which replaces that script's own section of BENCHMARKS.md (between ``<!-- bench:NAME -->``
markers) with the date, the command, the machine and the figures; text outside the markers
is kept, so the summary at the top of BENCHMARKS.md is edited by hand.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shlex
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "bench/configs/scifact-minilm.yaml"
BENCHMARKS = REPO / "BENCHMARKS.md"
SCIFACT = REPO.parent / "shared/datasets/scifact"
PACKAGES = ("torch", "transformers", "sentence-transformers", "faiss-cpu", "faiss-gpu", "pyserini", "snakemake",
            "numpy")


def parse_args(doc: str, extra=None) -> argparse.Namespace:
    """Arguments of the workflow-driving scripts (``extra(parser)`` adds a script's own)."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=str(DEFAULT_CONFIG))
    ap.add_argument("--cores", default="2")
    add_record_args(ap)
    if extra:
        extra(ap)
    return ap.parse_args()


def add_record_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--benchmarks-file", default=str(BENCHMARKS), help="where to record the figures")
    ap.add_argument("--no-record", action="store_true", help="print only; leave BENCHMARKS.md alone")


def results_dir(args: argparse.Namespace) -> Path:
    """The bench config's results folder, relative to the repository (as Snakemake targets are)."""
    return Path("results") / yaml.safe_load(Path(args.config).read_text())["dataset"]["name"]


def run_targets(args: argparse.Namespace, *targets: str, extra: list[str] = ()) -> Path:
    """Run the workflow's targets with the bench config; return that dataset's results folder."""
    subprocess.run([sys.executable, "-m", "snakemake", *targets, "--cores", args.cores, "--configfile", args.config,
                    *extra], cwd=REPO, check=True)
    return REPO / results_dir(args)


def training_seeds(n: int) -> list[int]:
    """The bench scripts' training seeds for ``--seeds n``: 42, 43, ... (the config's default seed first)."""
    return [42 + i for i in range(n)]


def comparison_lines(res: Path) -> list[str]:
    """A multi-seed run's paired nDCG@10 comparisons on dev (comparison.tsv), then the report's verdict lines."""
    import pandas as pd

    comparison = pd.read_csv(res / "comparison.tsv", sep="\t")
    ndcg = comparison[(comparison["split"] == "dev") & (comparison["metric"] == "ndcg@10")]
    table = ndcg.drop(columns=["split", "metric"]).to_string(index=False, float_format="%.4f").splitlines()
    return [*table, (res / "report/comparison.txt").read_text().strip()]


def minilm_checkpoint(folder: Path, model: str = "sentence-transformers/all-MiniLM-L6-v2") -> Path:
    """all-MiniLM-L6-v2 as sentence-transformers uses it (mean pooling, cosine), saved as a checkpoint."""
    from anceflow.model import EncoderSpec, load_dual_encoder, load_tokenizer

    load_dual_encoder(model, EncoderSpec("mean", "none", "cosine", True)).save(folder, load_tokenizer(model))
    return folder


def machine() -> str:
    """CPU (or GPU), cores, memory and the versions that matter, in one line."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    parts = [f"{cpu}, {cores} cores, {mem:.0f} GiB"]
    try:
        import torch

        if torch.cuda.is_available():
            parts.append(f"GPU {torch.cuda.get_device_name(0)}")
    except ImportError:
        pass
    versions = [f"Python {platform.python_version()}"]
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pass
    return "; ".join(parts + [", ".join(versions)])


class Figures:
    """Prints lines as they come and records them in BENCHMARKS.md at the end."""

    def __init__(self, name: str, title: str):
        self.name, self.title, self.lines = name, title, []

    def __call__(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def record(self, args: argparse.Namespace, notes: str = "") -> None:
        if getattr(args, "no_record", False):
            return
        command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0], REPO), *sys.argv[1:]])
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        body = "\n".join(self.lines)
        section = (f"<!-- bench:{self.name} -->\n## {self.title}\n\n`{command}` ({date})\\\n{machine()}\n\n"
                   + (notes.strip() + "\n\n" if notes.strip() else "")
                   + f"```text\n{body}\n```\n<!-- /bench:{self.name} -->")
        write_section(Path(args.benchmarks_file), self.name, section)
        print(f"recorded in {args.benchmarks_file}", file=sys.stderr)


def write_section(path: Path, name: str, section: str) -> None:
    """Replace (or append) the marked section ``name`` of ``path``."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"<!-- bench:{re.escape(name)} -->.*?<!-- /bench:{re.escape(name)} -->", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def replicate_collection(src: Path, dst: Path, factor: int, splits=("dev",)) -> None:
    """A dataset folder with the collection repeated ``factor`` times under new ids (pid-1, pid-2, ...)."""
    dst.mkdir(parents=True)
    lines = (src / "collection.tsv").read_text(encoding="utf-8").splitlines()
    with open(dst / "collection.tsv", "w", encoding="utf-8") as fh:
        for copy in range(factor):
            for line in lines:
                pid, text = line.split("\t", 1)
                fh.write(f"{pid}-{copy}\t{text}\n" if copy else f"{line}\n")
    for split in splits:
        (dst / f"queries.{split}.tsv").write_text((src / f"queries.{split}.tsv").read_text())
        (dst / f"qrels.{split}.tsv").write_text((src / f"qrels.{split}.tsv").read_text())
