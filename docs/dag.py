"""Draw the ANCE rounds part of the job DAG for staleness 0 and 1 (docs/img/rounds-s*.svg).

Runs a dry run, keeps the jobs of the loop (train, the bm25neg control, encode, the mining
checkpoints' search, mine), contracts the rest, and prints the jobs by "wave": jobs in the same wave
depend on nothing in it, so they can run at the same time (on separate GPUs on a cluster).

    python docs/dag.py        (needs graphviz's `dot` to draw; the waves print without it)
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
KEEP = ("train", "train_control", "encode_corpus", "dense_search_mining", "mine_negatives", "bm25_negatives",
        "init_model")


def job_graph(staleness: int, rounds: int, workdir: Path):
    """Jobs of a dry run as {jobid: label} and (input job, consumer job) edges, matched by file."""
    cfg = workdir / f"s{staleness}.yaml"
    cfg.write_text(f"dataset: {{name: dag}}\nance: {{rounds: {rounds}, staleness: {staleness}}}\nencode: {{shards: 1}}\n")
    text = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(workdir),
                           "--configfile", str(cfg), "-n", "all"], capture_output=True, text=True, check=True).stdout
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        head = re.match(r"(?:local)?rule (\w+):", block)
        if not head:
            continue
        fields = dict(re.findall(r"^\s+(input|output|jobid|wildcards): (.*)$", block, re.M))
        wild = " ".join(v for _, v in re.findall(r"(\w+)=([^,]+)", fields.get("wildcards", "")))
        jobs.append((fields["jobid"], f"{head.group(1)} {wild}".strip(),
                     fields.get("input", "").split(", "), fields.get("output", "").split(", ")))
    producer = {out: jobid for jobid, _, _, outs in jobs for out in outs if out}
    labels = {jobid: label for jobid, label, _, _ in jobs}
    edges = [(producer[i], jobid) for jobid, _, ins, _ in jobs for i in ins if i in producer]
    return labels, edges


def contract(labels, edges):
    """Keep the loop's jobs; connect kept jobs that were linked through dropped ones."""
    def keep(node):
        return labels[node].split(" ")[0] in KEEP

    parents = defaultdict(set)
    for a, b in edges:
        parents[b].add(a)

    def kept_ancestors(node, seen):
        out = set()
        for p in parents[node]:
            if p in seen:
                continue
            seen.add(p)
            out |= {p} if keep(p) else kept_ancestors(p, seen)
        return out

    nodes = [n for n in labels if keep(n)]
    return nodes, {(p, n) for n in nodes for p in kept_ancestors(n, set())}


def waves(nodes, edges):
    parents = defaultdict(set)
    for a, b in edges:
        parents[b].add(a)
    depth = {}

    def level(n):
        if n not in depth:
            depth[n] = 1 + max((level(p) for p in parents[n]), default=-1)
        return depth[n]

    out = defaultdict(list)
    for n in nodes:
        out[level(n)].append(n)
    return [out[k] for k in sorted(out)]


def main() -> int:
    img = REPO / "docs/img"
    img.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for staleness in (0, 1):
            labels, edges = job_graph(staleness, 3, Path(tmp))
            nodes, kept = contract(labels, edges)
            short = {n: labels[n] for n in nodes}
            print(f"staleness {staleness}: jobs by wave (same wave = can run at the same time)")
            for i, wave in enumerate(waves(nodes, kept)):
                print(f"  wave {i}: " + ", ".join(sorted(short[n] for n in wave)))
            dot = ["digraph rounds {", "  rankdir=LR; node [shape=box, style=rounded, fontsize=10];"]
            dot += [f'  n{n} [label="{short[n]}"];' for n in nodes]
            dot += [f"  n{a} -> n{b};" for a, b in sorted(kept)]
            dot.append("}")
            dot_file = img / f"rounds-s{staleness}.dot"
            dot_file.write_text("\n".join(dot) + "\n")
            if shutil.which("dot"):
                subprocess.run(["dot", "-Tsvg", str(dot_file), "-o", str(img / f"rounds-s{staleness}.svg")], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
