"""Scale rehearsal: the whole workflow on a synthetic MS MARCO-shaped dataset, per-stage cost,
and the extrapolation to the MS MARCO passage preset next to the SLURM profile's requests.

The dataset (``--passages N``, default 1,000,000) has MS MARCO's proportions: N passages of
30-90 words, N/10 training queries of which 60% are judged (MS MARCO: 808,731 / 502,939), and
7 x N/1,000 dev queries (MS MARCO dev.small: 6,980); words are whole-word tokens of the model's
vocabulary drawn Zipf-like, queries take words of their passage. The model is a random
bag-of-embeddings BERT (no transformer layer: embeddings, LayerNorm and mean pooling) of the
preset's width, 768, with all-MiniLM-L6-v2's tokenizer; the run is BM25, zeroshot, warmup,
2 ANCE rounds and evaluation, through ``snakemake --cores 2`` (``bench/configs/scale.yaml``).

Per stage it prints wall time, peak RSS (max over the stage's jobs, from Snakemake's benchmark
files), data written, and the whole run's peak disk (sampled every 2 s). With ``--fit-passages
M`` (default N/4) it first runs the same at M passages and fits, per stage, peak RSS = fixed +
slope x size (the size that drives the stage: passages, training queries, or both), to
extrapolate each job's memory to the passage preset (8,841,823 passages, 502,939 judged
training queries, 6,980 dev queries, 8 encoding shards); times extrapolate linearly in the
same size for CPU stages, and from the GPU throughputs measured in BENCHMARKS.md for GPU ones.
The rehearsal must learn: a trained row (round-n, bm25neg) whose recall@1000 is below 10x chance
(10 x 1000 / N) fails the script (exit 1), since a model trained at size that scores at chance is
what an id mix-up (shard order, run rows, row-to-pid, query order) would look like. The last two
lines are ``round0_recall_at_1000=<x>`` and ``peak_rss_mb_max=<MB> stage=<rule>`` (at N passages).

    python bench/scale.py [--passages 1000000] [--fit-passages 250000] [--cores 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from common import REPO, Figures, add_record_args

PRESET = {"passages": 8_841_823, "train": 502_939, "dev": 6_980, "shards": 8, "rounds": 10}
MODEL = "sentence-transformers/all-MiniLM-L6-v2"  # its tokenizer; the model itself is random (bow_model)
# GPU throughputs measured on an H100 (BENCHMARKS.md, bench/gpu.py): roberta-base with ANCE's head.
GPU_ENCODE_TOKENS_PER_S = 1_392_667
GPU_TRAIN_EXAMPLES_PER_S = 330
MSMARCO_PASSAGE_TOKENS = 80  # mean roberta tokens of an MS MARCO passage, special tokens included


# --------------------------------------------------------------------------- the synthetic dataset

def vocabulary() -> np.ndarray:
    from anceflow.model_source import load_tokenizer

    vocab = load_tokenizer(MODEL).get_vocab()
    words = sorted((i, w) for w, i in vocab.items() if w.isalpha() and w.islower() and len(w) > 2)
    return np.array([w for _, w in words])


def make_dataset(folder: Path, passages: int, seed: int = 42) -> dict:
    """Write collection/queries/qrels TSVs (the ``local`` layout) with MS MARCO's proportions."""
    rng = np.random.default_rng(seed)
    words = vocabulary()
    weights = 1.0 / (np.arange(len(words)) + 20.0)
    weights /= weights.sum()
    folder.mkdir(parents=True, exist_ok=True)
    lengths = rng.integers(30, 91, size=passages)
    starts = np.r_[0, np.cumsum(lengths)]
    drawn = rng.choice(len(words), size=int(starts[-1]), p=weights)
    with open(folder / "collection.tsv", "w", encoding="utf-8") as fh:
        for block in range(0, passages, 100_000):
            fh.writelines(f"p{i}\t{' '.join(words[drawn[starts[i]:starts[i + 1]]])}\n"
                          for i in range(block, min(passages, block + 100_000)))
    n_train, n_dev = max(50, passages // 10), max(20, 7 * passages // 1000)
    targets = rng.choice(passages, size=n_train + n_dev, replace=False)
    sizes = {}
    for split, qids, judged_share in (("train", range(n_train), 0.6), ("dev", range(n_train, n_train + n_dev), 1.0)):
        with open(folder / f"queries.{split}.tsv", "w", encoding="utf-8") as q, \
                open(folder / f"qrels.{split}.tsv", "w", encoding="utf-8") as r:
            judged = 0
            for j in qids:
                doc = drawn[starts[targets[j]]:starts[targets[j] + 1]]
                picks = rng.choice(doc, size=rng.integers(3, 8), replace=False)  # may repeat a word
                if rng.random() < 0.3:
                    picks = np.r_[picks, rng.choice(len(words), p=weights)]
                q.write(f"q{j}\t{' '.join(words[picks])}\n")
                if rng.random() < judged_share:
                    r.write(f"q{j} 0 p{targets[j]} 1\n")
                    judged += 1
        sizes[split] = {"queries": len(qids), "judged": judged}
    return {"passages": passages, **sizes}


def bow_model(folder: Path) -> Path:
    """A random BERT with no transformer layer (word + position embeddings, LayerNorm), 768 wide.

    Why this model: the synthetic queries match their passage by shared words, and the vectors
    must hold a 30-90-word bag finely enough to rank 1 passage in 1,000,000. A random projection of
    an IDF-weighted bag of words reaches nDCG@10 0.13 at 128 dimensions already at 200,000
    passages, and 0.32 at 384 and 0.42 at 768 at 1M (a one-off numpy check on this data, not kept
    in bench/); a transformer layer of width 768 costs ~6x the old
    2-layer 128-wide model per token, which 2 cores cannot afford five times over 1M passages, and
    adds nothing a bag of words needs. 768 is also the presets' vector width, so the rehearsal's
    search and mining memory and disk per passage are the preset's.
    """
    import torch
    from transformers import BertConfig, BertModel

    from anceflow.model_source import load_tokenizer

    if not (folder / "config.json").exists():
        tokenizer = load_tokenizer(MODEL)
        torch.manual_seed(0)
        config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=768, num_hidden_layers=0,
                            num_attention_heads=12, intermediate_size=768, max_position_embeddings=512)
        model = BertModel(config, add_pooling_layer=False)
        with torch.no_grad():  # a bag of words has no order: position and segment start at zero (trainable)
            model.embeddings.position_embeddings.weight.zero_()
            model.embeddings.token_type_embeddings.weight.zero_()
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder


# --------------------------------------------------------------------------- one run

class DiskSampler(threading.Thread):
    """The peak size of a folder, sampled every ``every`` seconds."""

    def __init__(self, folder: Path, every: float = 2.0):
        super().__init__(daemon=True)
        self.folder, self.every, self.peak, self.stopped = folder, every, 0, threading.Event()

    def size(self) -> int:
        total = 0
        for root, _, files in os.walk(self.folder):
            for f in files:
                try:
                    total += os.lstat(os.path.join(root, f)).st_size
                except OSError:
                    pass  # a temporary file gone between listing and stat
        return total

    def run(self):
        while not self.stopped.wait(self.every):
            self.peak = max(self.peak, self.size())

    def stop(self) -> int:
        self.stopped.set()
        self.join()
        self.peak = max(self.peak, self.size())
        return self.peak


def run(passages: int, cores: str, work: Path) -> dict:
    """Generate the dataset, run the workflow, collect per-stage figures."""
    name = f"scale-{passages}"
    data = work / f"data-{passages}"
    if not (data / "qrels.dev.tsv").exists():
        t = time.perf_counter()
        sizes = make_dataset(data, passages)
        print(f"dataset {sizes} in {time.perf_counter() - t:.0f} s", flush=True)
    config = yaml.safe_load((REPO / "bench/configs/scale.yaml").read_text())
    config["dataset"].update({"name": name, "path": str(data)})
    config["model"]["name_or_path"] = str(bow_model(work / "bow-bert-768"))
    config_path = work / f"{name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    res = REPO / "results" / name
    shutil.rmtree(res, ignore_errors=True)
    res.mkdir(parents=True)
    sampler = DiskSampler(res)
    sampler.start()
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "snakemake", "--cores", cores, "--configfile", str(config_path)],
                   cwd=REPO, check=True)
    wall = time.perf_counter() - t
    peak_disk = sampler.stop()
    (res / "scale.json").write_text(json.dumps({"wall": wall, "peak_disk": peak_disk}))
    return collect(passages)


def collect(passages: int) -> dict:
    """A finished run's figures: per-stage sums and maxima from its benchmark files."""
    res = REPO / "results" / f"scale-{passages}"
    stages = defaultdict(lambda: {"jobs": 0, "s": 0.0, "max_rss": 0.0, "io_out": 0.0})
    for tsv in res.rglob("benchmarks/*.tsv"):
        row = pd.read_csv(tsv, sep="\t").iloc[0]
        stage = stages[tsv.name.split(".")[0]]
        stage["jobs"] += 1
        stage["s"] += float(row["s"])
        stage["max_rss"] = max(stage["max_rss"], float(row["max_rss"]) if row["max_rss"] != "-" else 0.0)
        stage["io_out"] += float(row["io_out"]) if row["io_out"] != "-" else 0.0
    stats = json.loads((res / "prepared/stats.json").read_text())
    run = json.loads((res / "scale.json").read_text())
    return {"passages": passages, "train": stats["splits"]["train"]["queries"], "dev": stats["splits"]["dev"]["queries"],
            "wall": run["wall"], "peak_disk": run["peak_disk"], "final_disk": DiskSampler(res).size(),
            "stages": dict(stages), "metrics": pd.read_csv(res / "metrics.tsv", sep="\t")}


# --------------------------------------------------------------------------- extrapolation

def driver(stage: str, r: dict) -> float:
    """The size a stage's job grows with (per job: encoding is split over shards)."""
    per_shard = r["passages"] / r.get("shards", 2)
    return {
        "prepare": r["passages"], "tokenize_corpus": r["passages"], "bm25_index": r["passages"],
        "encode_corpus": per_shard, "build_index": r["passages"],
        "tokenize_queries": r["train"], "bm25_search_train": r["train"], "bm25_negatives": r["train"],
        "mine_negatives": r["train"], "train": r["train"], "train_control": r["train"],
        "dense_search_mining": r["train"], "encode_queries": r["train"], "bm25_search": r["dev"],
        "dense_search": r["dev"], "evaluate": r["dev"], "evaluate_rerank": r["dev"],
    }.get(stage, 1.0)


#: Stages whose CPU time divides by the job's threads (Anserini, the tokenizer, matrix products).
THREADED = {"tokenize_corpus", "tokenize_queries", "bm25_index", "bm25_search", "bm25_search_train", "build_index"}
GPU_STAGES = {"train", "train_control", "encode_corpus", "encode_queries", "dense_search", "dense_search_mining"}
GPU_FP32_FLOPS = 40e12  # exact search in fp32 on an H100, matrix products only


def cpu_minutes(stage: str, r: dict, preset: dict, seconds_per_job: float, cpus: int) -> float:
    """A CPU stage's time per job at the preset's size with the profile's cpus (2 cores here)."""
    factor = driver(stage, preset) / driver(stage, r)
    if stage in ("bm25_search", "bm25_search_train"):
        factor *= preset["passages"] / r["passages"]  # longer postings per query term
    return seconds_per_job * factor * (2 / cpus if stage in THREADED else 1) / 60


def gpu_estimate(stage: str, preset: dict) -> str:
    """A GPU stage's time per job at the preset's size, from H100 measurements (roberta-base)."""
    if stage == "encode_corpus":
        s = preset["passages"] / preset["shards"] * MSMARCO_PASSAGE_TOKENS / GPU_ENCODE_TOKENS_PER_S
        return f"{s / 60:.0f} min"
    if stage == "encode_queries":
        return f"{preset['train'] * 12 / GPU_ENCODE_TOKENS_PER_S / 60:.1f} min"
    if stage == "train":
        return (f"{60_000 * 32 / GPU_TRAIN_EXAMPLES_PER_S / 3600:.1f} h warmup, "
                f"{10_000 * 64 / GPU_TRAIN_EXAMPLES_PER_S / 3600:.1f} h a round")
    if stage == "train_control":
        return f"{preset['rounds'] * 10_000 * 64 / GPU_TRAIN_EXAMPLES_PER_S / 3600:.1f} h"
    queries = preset["train"] if stage == "dense_search_mining" else preset["dev"] + 400
    return f"{2 * queries * preset['passages'] * 768 / GPU_FP32_FLOPS / 60:.1f} min + reading 13.6 GB"


def profile_requests() -> dict:
    profile = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())
    default = profile.get("default-resources", {})
    out = {"_default": default}
    for rule, res in profile.get("set-resources", {}).items():
        out[rule] = {**default, **res}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--passages", type=int, default=1_000_000)
    ap.add_argument("--fit-passages", type=int, default=None, help="smaller run for the memory fit (default N/4; 0: none)")
    ap.add_argument("--cores", default="2")
    ap.add_argument("--work", default=str(REPO / "results/scale-work"))
    ap.add_argument("--report-only", action="store_true", help="print the figures of runs already made")
    add_record_args(ap)
    args = ap.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    fit_n = args.passages // 4 if args.fit_passages is None else args.fit_passages
    measure = collect if args.report_only else (lambda n: run(n, args.cores, work))
    small = measure(fit_n) if fit_n else None
    big = measure(args.passages)
    preset = dict(PRESET)
    requests = profile_requests()

    out = Figures("scale", f"Scale rehearsal: {args.passages:,} passages, extrapolated to MS MARCO passage")
    out(f"synthetic MS MARCO-shaped data: {big['passages']:,} passages, {big['train']:,} judged training queries, "
        f"{big['dev']:,} dev queries; random bag-of-embeddings BERT (768 wide, no layers), bench/configs/scale.yaml, --cores {args.cores}")
    out(f"whole run {big['wall'] / 60:.1f} min; peak disk of results/ {big['peak_disk'] / 2**30:.2f} GiB, "
        f"left at the end {big['final_disk'] / 2**30:.2f} GiB"
        + (f" (at {small['passages']:,} passages: {small['wall'] / 60:.1f} min, peak disk "
           f"{small['peak_disk'] / 2**30:.2f} GiB)" if small else ""))
    out("")
    out(f"{'stage':<20} {'jobs':>4} {'time s':>8} {'peak RSS MB':>11} {'written MB':>10}"
        + (f" {'RSS at ' + format(fit_n, ','):>15}" if small else ""))
    order = sorted(big["stages"], key=lambda s: -big["stages"][s]["s"])
    for stage in order:
        b = big["stages"][stage]
        line = f"{stage:<20} {b['jobs']:>4} {b['s']:>8.0f} {b['max_rss']:>11.0f} {b['io_out']:>10.0f}"
        if small and stage in small["stages"]:
            line += f" {small['stages'][stage]['max_rss']:>15.0f}"
        out(line)
    out("")
    out("Extrapolated to the passage preset, per job: memory = fixed + slope x size, fitted on the two runs; CPU")
    out("time linear in the stage's size, divided by the profile's cpus where the stage uses threads; GPU stages")
    out("from H100 throughputs measured by bench/gpu.py; beside profiles/slurm's requests:")
    out(f"{'stage':<20} {'peak RSS GB':>11} {'time per job':>34} {'requested GB':>12} {'cpus':>4} {'runtime':>8}")
    worst = ("", 0.0)
    for stage in order:
        b = big["stages"][stage]
        worst = max(worst, (stage, b["max_rss"]), key=lambda x: x[1])
        size_big, size_preset = driver(stage, big), driver(stage, preset)
        if small and stage in small["stages"] and driver(stage, small) != size_big:
            slope = max(0.0, (b["max_rss"] - small["stages"][stage]["max_rss"]) / (size_big - driver(stage, small)))
            rss = b["max_rss"] + slope * (size_preset - size_big)
        else:
            rss = b["max_rss"] * max(1.0, size_preset / size_big)  # no fit: linear, an upper bound
        req = requests.get(stage, requests["_default"])
        cpus = int(req.get("cpus_per_task", 2))
        when = (gpu_estimate(stage, preset) + " (GPU)" if stage in GPU_STAGES
                else f"{cpu_minutes(stage, big, preset, b['s'] / b['jobs'], cpus):.0f} min")
        mem = req.get("mem_mb")
        out(f"{stage:<20} {rss / 1024:>11.1f} {when:>34} {mem / 1000 if mem else math.nan:>12.0f} {cpus:>4} "
            f"{str(req.get('runtime')):>8}")
    out("")
    out(f"metrics at this size (chance: recall@1000 = {1000 / big['passages']:.4f}):")
    for line in big["metrics"].to_string(index=False).splitlines():
        out("  " + line)
    failures = learning_failures(big["metrics"], big["passages"])
    for failure in failures:
        out(f"FAIL: {failure}")
    full = big["metrics"][big["metrics"].get("ranking", "full") == "full"].set_index("system")
    ndcg, bm25 = full.loc["round-0", "ndcg@10"], full.loc["bm25", "ndcg@10"]
    out(f"round-0 nDCG@10 {ndcg:.4f} = {ndcg / bm25:.2f} x BM25's {bm25:.4f} on the same data")
    out(f"round0_recall_at_1000={full.loc['round-0', 'recall@1000']:.4f}")
    out(f"peak_rss_mb_max={worst[1]:.0f} stage={worst[0]}")
    out.record(args)
    return 1 if failures else 0


def learning_failures(metrics: pd.DataFrame, passages: int) -> list[str]:
    """Trained rows near chance: recall@1000 below 10x what a random ranking gets (1000 / N)."""
    floor = 10 * 1000 / passages
    trained = metrics[metrics["system"].str.match(r"round-\d+|bm25neg") & (metrics.get("ranking", "full") == "full")]
    return [f"{system} recall@1000 {recall:.4f} is below 10x chance ({floor:.4f}): a model trained at this size "
            "should not score at chance (an id mix-up would look like this)"
            for system, recall in zip(trained["system"], trained["recall@1000"]) if recall < floor]


if __name__ == "__main__":
    sys.exit(main())
