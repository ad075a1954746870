# Shared set-up: config validation, output paths, and input functions.
import os
import re
import sys

# The logic lives in the anceflow package at the repo root (scripts find it the same way,
# through snakemake.scriptdir, so it works inside per-rule conda envs too).
sys.path.insert(0, ANCEFLOW_DIR)

from anceflow import config as anceflow_config
from anceflow.digest import source_digest
from anceflow.model_source import model_tag, needs_fetch

try:
    anceflow_config.validate(config)
except anceflow_config.ConfigError as err:
    raise WorkflowError(str(err)) from None


DATASET = config["dataset"]
MODEL = config["model"]
RES = f"{config['results_dir']}/{DATASET['name']}"
PREP = f"{RES}/prepared"
TRAIN_SPLIT = DATASET["train_split"]
EVAL_SPLITS = list(dict.fromkeys(DATASET["eval_splits"]))
SPLITS = list(dict.fromkeys([TRAIN_SPLIT, *EVAL_SPLITS]))
# Tokenized data is keyed by tokenizer and lengths, so a new model or length gets its own copy.
TOK = "{res}/tokens/{tag}.q{q}.d{d}{maxp}".format(
    res=RES,
    tag=model_tag(MODEL["name_or_path"]),
    q=MODEL["max_query_len"],
    d=MODEL["max_doc_len"],
    maxp=f"x{MODEL['doc_chunks']}" if MODEL["doc_chunks"] > 1 else "",
)
# The model every job loads: as named when that is a local folder (or a model a package ships),
# else a snapshot that rule fetch_model stores on the submit host (compute nodes may be offline).
FETCH_MODEL = needs_fetch(MODEL["name_or_path"])
MODEL_PATH = (
    f"{DATASET['download_dir']}/models/{model_tag(MODEL['name_or_path'])}"
    if FETCH_MODEL
    else MODEL["name_or_path"]
)
# dataset.source ir_datasets: rule download_ir_datasets exports the splits' ids into this folder
# (the ids are checked at config time; ir_datasets is imported only for this source).
if DATASET["source"] == "ir_datasets":
    from anceflow import irds

    IRDS_IDS = {split: DATASET["ir_datasets"][split] for split in SPLITS}
    IRDS_CANDIDATES = irds.candidate_splits(IRDS_IDS, EVAL_SPLITS)
    IRDS_DIR = irds.folder(DATASET["download_dir"], IRDS_IDS, SPLITS, IRDS_CANDIDATES)
else:
    IRDS_IDS, IRDS_CANDIDATES, IRDS_DIR = {}, [], f"{DATASET['download_dir']}/ir_datasets/none"
ANCE = config["ance"]
# The cross-encoder that denoises mined negatives (ance.negatives.cross_encoder), if any: a local
# folder as named, else a snapshot that rule fetch_cross_encoder stores on the submit host.
CROSS_ENCODER = ANCE["negatives"]["cross_encoder"]["name_or_path"]
FETCH_CROSS_ENCODER = CROSS_ENCODER is not None and needs_fetch(CROSS_ENCODER)
CROSS_ENCODER_PATH = (
    f"{DATASET['download_dir']}/cross-encoders/{model_tag(CROSS_ENCODER)}" if FETCH_CROSS_ENCODER else CROSS_ENCODER
)
ROUNDS = list(range(ANCE["rounds"] + 1))  # round 0 is the warmup
# Systems in metrics.tsv: BM25, the pretrained model as is, and every round.
# "bm25neg" (ance.control): round 0 continued on BM25 negatives as long as all ANCE rounds together.
CONTROL = ["bm25neg"] if ANCE["control"] and ANCE["rounds"] > 0 else []
SYSTEMS = ["bm25", "zeroshot", *[f"round-{n}" for n in ROUNDS], *CONTROL]
DENSE_SYSTEM = "|".join([r"zeroshot|round-\d+", *CONTROL])
# Training seeds (`seeds`; null: one run with `seed`). What a seed changes (negatives, checkpoints,
# their vectors, runs, evaluation, report) lives in RUN: results/<name>/seed-<s>/ with several seeds,
# results/<name>/ with one, as before. Data, tokens and BM25 are shared in results/<name>/.
SEEDS = list(dict.fromkeys(config["seeds"] or [config["seed"]]))
MULTI_SEED = len(SEEDS) > 1
RUN = f"{RES}/seed-{{seed}}" if MULTI_SEED else RES


def run_dir(wildcards):
    """This job's RUN folder (input functions return concrete paths)."""
    return RUN.format(seed=wildcards.seed) if MULTI_SEED else RES


def job_seed(wildcards):
    """This job's training seed: its seed wildcard, or `seed`."""
    return int(wildcards.seed) if MULTI_SEED else config["seed"]


def per_seed(path):
    """A RUN path for every seed."""
    return expand(path, seed=SEEDS) if MULTI_SEED else [path]


def mining_round(n):
    """Checkpoint whose index mines round n's negatives: n-1-staleness, never before round 0."""
    return max(n - 1 - ANCE["staleness"], 0)


# A checkpoint that some round mines with also searches the training queries (in the same job
# as its evaluation splits, so its corpus vectors are read once).
MINING_SYSTEMS = sorted({f"round-{mining_round(n)}" for n in ROUNDS if n > 0})
EVAL_ONLY_SYSTEMS = [s for s in SYSTEMS if s != "bm25" and s not in MINING_SYSTEMS]


def alternatives(names):
    """A wildcard constraint matching exactly these names (and nothing when there are none)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def intermediate(path):
    """An output no later stage needs once its consumers ran: temporary unless keep_intermediate."""
    return path if config["keep_intermediate"] else temp(path)


def model_input(wildcards):
    """The fetched model folder, for the jobs that load the model by name (nothing for a local one)."""
    return [MODEL_PATH] if FETCH_MODEL else []


def source_input(wildcards):
    """Input of prepare: a user folder's files, or a folder another rule makes."""
    source = DATASET["source"]
    if source == "demo":
        return f"{RES}/source"
    if source in ("msmarco-passage", "msmarco-doc"):
        return f"{DATASET['download_dir']}/{source}"
    if source == "ir_datasets":
        return IRDS_DIR
    if DATASET["path"] is None:
        raise WorkflowError(f"dataset.source is {source!r}, which needs dataset.path")
    if source == "beir" and not os.path.isdir(DATASET["path"]):
        if not re.fullmatch(r"[\w.-]+", DATASET["path"]):
            raise WorkflowError(f"dataset.path {DATASET['path']!r} is neither a folder nor a BEIR dataset name")
        return f"{DATASET['download_dir']}/beir/{DATASET['path']}"
    if not os.path.isdir(DATASET["path"]):
        raise WorkflowError(f"dataset.path {DATASET['path']!r} is not a folder")
    return local_source_files(DATASET["path"], source)


def local_source_files(path, source):
    # Listing the files (not the folder) makes an edit to any of them re-run prepare.
    if source == "beir":
        files = ["corpus.jsonl", "queries.jsonl", *[f"qrels/{s}.tsv" for s in SPLITS]]
    else:
        files = ["collection.tsv"]
        for split in SPLITS:
            files += [f"queries.{split}.tsv", f"qrels.{split}.tsv"]
            if os.path.exists(f"{path}/candidates.{split}.tsv"):
                files.append(f"candidates.{split}.tsv")
    return [f"{path}/{f}" for f in files]


def prepared_outputs():
    return [f"{PREP}/collection.parquet", f"{PREP}/stats.json"] + [
        f"{PREP}/{kind}.{split}.parquet"
        for split in SPLITS
        for kind in ("queries", "qrels", "candidates")
    ]


def output_dir(wildcards, output):
    return os.path.dirname(output[0])


def token_prefix(wildcards, output):
    return output[0].removesuffix(".tokens.npy")


def tokenized(prefix):
    return [f"{TOK}/{prefix}.{part}" for part in ("tokens.npy", "lengths.npy", "rows.parquet")]


def rerank_splits():
    """Evaluation splits with a candidate list to rerank: MS MARCO's dev (top1000.dev / docdev-top100)
    dl19 and dl20 (the TREC top-1000 / top-100), or a local folder's candidates.<split>.tsv."""
    if DATASET["source"] in ("msmarco-passage", "msmarco-doc"):
        return [s for s in EVAL_SPLITS if s in ("dev", "dl19", "dl20")]
    if DATASET["source"] == "local" and DATASET["path"]:
        return [s for s in EVAL_SPLITS if os.path.exists(f"{DATASET['path']}/candidates.{s}.tsv")]
    if DATASET["source"] == "ir_datasets":
        return IRDS_CANDIDATES  # evaluation splits whose id has scoreddocs
    return []


RERANK_SPLITS = rerank_splits()


def system_metrics(system):
    """A system's metrics files: BM25's shared, a dense system's in RUN (with the seed wildcard)."""
    if system == "bm25":
        return [f"{RES}/eval/bm25/{split}.metrics.tsv" for split in EVAL_SPLITS]
    metrics = [f"{RUN}/eval/{system}/{split}.metrics.tsv" for split in EVAL_SPLITS]
    return metrics + [f"{RUN}/eval/{system}/{split}.rerank.metrics.tsv" for split in RERANK_SPLITS]


def export_target():
    """The Pyserini export of the last round (target `export`, or part of `all` with export: true)."""
    return f"{RUN}/export/round-{ANCE['rounds']}/pyserini"


def all_outputs():
    return [
        f"{RES}/metrics.tsv",
        f"{RES}/comparison.tsv",
        *per_seed(f"{RUN}/report/metrics.png"),
        *per_seed(f"{RUN}/negatives/round-0.parquet"),
        *tokenized("corpus"),
        *[path for split in SPLITS for path in tokenized(f"queries.{split}")],
        # In the same run, the corpus vectors are consumed by the export before they are deleted.
        *(per_seed(export_target()) if config["export"] else []),
    ]


def encoder_spec(wildcards):
    """How the model is used (pooling, head, similarity, sharing, lengths): fixed when training starts."""
    return {
        "pooling": MODEL["pooling"],
        "head": MODEL["head"],
        "similarity": MODEL["similarity"],
        "shared": MODEL["shared_encoder"],
        "max_query_len": MODEL["max_query_len"],
        "max_doc_len": MODEL["max_doc_len"],
    }


def train_init(wildcards):
    n = int(wildcards.n)
    return f"{run_dir(wildcards)}/checkpoints/" + ("zeroshot" if n == 0 else f"round-{n - 1}")


def carries_optimizer(n):
    """Whether round n starts from round n-1's optimizer state (ance.carry_optimizer)."""
    carry = ANCE["carry_optimizer"]
    return n > 0 and (carry == "all" or (carry == "rounds" and n > 1))


def ance_schedule(first_step):
    """The schedule settings of an ANCE-stage job that starts at step first_step of rounds 1..N."""
    if ANCE["schedule"] == "per_round":
        return {}
    return {
        "schedule_warmup": ANCE["warmup_steps"],
        "schedule_total": ANCE["schedule_steps"] or ANCE["rounds"] * ANCE["steps_per_round"],
        "schedule_offset": first_step,
    }


def base_settings():
    # save_every and log_every are bookkeeping: the script reads them from the config, so that
    # changing them does not make finished training stale.
    bookkeeping = ("save_every", "log_every")
    return {k: v for k, v in config["train"].items() if k not in bookkeeping}


def train_settings(wildcards):
    """Training settings of round n (params, so changing one re-runs that training)."""
    n = int(wildcards.n)
    steps = ANCE["steps_per_round"]
    settings = {
        **base_settings(),
        "steps": steps,
        "lr": config["train"]["lr"],
        "epochs": None,
        "seed": job_seed(wildcards) + n,
        "save_optimizer": carries_optimizer(n + 1) and n < ANCE["rounds"],
        "init_optimizer": f"{run_dir(wildcards)}/checkpoints/round-{n - 1}/optimizer.pt" if carries_optimizer(n) else None,
    }
    if n > 0:
        return {**settings, **ance_schedule((n - 1) * steps)}
    warmup = config["warmup"]
    settings.update(steps=warmup["steps"], epochs=warmup["epochs"], lr=warmup["lr"] or settings["lr"])
    for key in ("batch_size", "grad_accum"):
        settings[key] = warmup[key] or settings[key]
    if warmup["warmup_steps"] is not None or warmup["schedule_steps"] is not None:
        settings.update(schedule_warmup=warmup["warmup_steps"] or 0, schedule_offset=0,
                        schedule_total=warmup["schedule_steps"] or warmup["steps"])
    return settings


def control_settings(wildcards):
    """System bm25neg: from round 0, on its BM25 negatives, for as many steps as rounds 1..N with
    their settings (one job: schedule and optimizer as the rounds run them back to back)."""
    return {
        **base_settings(),
        "steps": ANCE["rounds"] * ANCE["steps_per_round"],
        "lr": config["train"]["lr"],
        "epochs": None,
        "seed": job_seed(wildcards) + ANCE["rounds"] + 1,
        "save_optimizer": False,
        "init_optimizer": f"{run_dir(wildcards)}/checkpoints/round-0/optimizer.pt" if ANCE["carry_optimizer"] == "all" else None,
        **ance_schedule(0),
    }


def mining_input(wildcards):
    n = int(wildcards.n)
    run = f"{run_dir(wildcards)}/runs/round-{mining_round(n)}/{TRAIN_SPLIT}"
    inputs = {
        "run": f"{run}.rows.npy",
        "scores": f"{run}.scores.npy",
        "positives": f"{run}.positives.parquet",
        "queries": f"{PREP}/queries.{TRAIN_SPLIT}.parquet",
        "collection": f"{PREP}/collection.parquet",
        "qrels": f"{PREP}/qrels.{TRAIN_SPLIT}.parquet",
        "previous": f"{run_dir(wildcards)}/negatives/round-{n - 1}.parquet",
        # Its manifest gives the mining checkpoint's hash, recorded in the negatives' JSON.
        "checkpoint": f"{run_dir(wildcards)}/checkpoints/round-{mining_round(n)}",
    }
    if FETCH_CROSS_ENCODER:
        inputs["cross_encoder"] = CROSS_ENCODER_PATH
    return inputs


def audit_input(wildcards):
    """What the audit of round n's negatives reads: its negatives, the judgments, the token ids."""
    return {
        "negatives": f"{run_dir(wildcards)}/negatives/round-{wildcards.n}.parquet",
        "queries": f"{PREP}/queries.{TRAIN_SPLIT}.parquet",
        "collection": f"{PREP}/collection.parquet",
        "qrels": f"{PREP}/qrels.{TRAIN_SPLIT}.parquet",
        "corpus": tokenized("corpus"),
        "model": model_input(wildcards),
    }


def mining_controls(wildcards):
    """ance.negatives as mining uses it: the window, the margin, the cross-encoder's settings."""
    negatives = ANCE["negatives"]
    return {"rank_window": negatives["rank_window"], "relative_margin": negatives["relative_margin"],
            "cross_encoder": negatives["cross_encoder"] if CROSS_ENCODER else None}


def search_outputs(mining):
    """The runs a checkpoint's search job writes: a run per evaluation split, a reranked run per
    split with candidates, and for a mining checkpoint the training split's rows."""
    outputs = [f"{RUN}/runs/{{system}}/{split}.trec" for split in EVAL_SPLITS]
    outputs += [f"{RUN}/runs/{{system}}/{split}.rerank.trec" for split in RERANK_SPLITS]
    if mining:
        outputs.append(intermediate(f"{RUN}/runs/{{system}}/{TRAIN_SPLIT}.rows.npy"))
    return outputs


def self_check_result(system, run=RUN):
    """The id self-check's result of a checkpoint's search job (JSON, read by the report)."""
    return f"{run}/runs/{system}/self_check.json"


def self_check_results(wildcards):
    return [self_check_result(s, run_dir(wildcards)) for s in SYSTEMS if s != "bm25"]


def search_plan(wildcards):
    """(split, depth, rerank) of each run a checkpoint's search job writes, in its outputs' order."""
    plan = [(split, config["evaluate"]["depth"], False) for split in EVAL_SPLITS]
    plan += [(split, 0, True) for split in RERANK_SPLITS]
    if wildcards.system in MINING_SYSTEMS:
        plan.append((TRAIN_SPLIT, ANCE["topk"], False))
    return plan


def search_input(wildcards):
    splits = [split for split, _, _ in search_plan(wildcards)]
    inputs = {
        "shards": corpus_shards(wildcards),
        "queries": [f"{run_dir(wildcards)}/embeddings/{wildcards.system}/queries.{split}.npy" for split in splits],
        "query_rows": [f"{TOK}/queries.{split}.rows.parquet" for split in splits],
        "candidates": [f"{PREP}/candidates.{split}.parquet" for split in RERANK_SPLITS],
        "corpus_rows": f"{TOK}/corpus.rows.parquet",
        "collection": f"{PREP}/collection.parquet",
        "probes": [
            f"{run_dir(wildcards)}/embeddings/{wildcards.system}/corpus.{shard}.probe.npz"
            for shard in range(config["encode"]["shards"])
        ],
    }
    if config["index"]["type"] != "flat":
        inputs["index"] = f"{run_dir(wildcards)}/index/{wildcards.system}/index.faiss"
    if wildcards.system in MINING_SYSTEMS:
        inputs["qrels"] = f"{PREP}/qrels.{TRAIN_SPLIT}.parquet"  # the positives' scores
    return inputs


def corpus_shards(wildcards):
    return [
        f"{run_dir(wildcards)}/embeddings/{wildcards.system}/corpus.{shard}.npy"
        for shard in range(config["encode"]["shards"])
    ]


def training_logs(wildcards):
    run = run_dir(wildcards)
    return [f"{run}/train/round-{n}.log.csv" for n in ROUNDS] + [f"{run}/train/{c}.log.csv" for c in CONTROL]


def mining_stats(wildcards):
    return [f"{run_dir(wildcards)}/negatives/round-{n}.json" for n in ROUNDS]


def audits(wildcards):
    return [f"{run_dir(wildcards)}/negatives/round-{n}.audit.json" for n in ROUNDS]


def relevance_level(wildcards):
    """evaluate.relevance_level, or the split's own (TREC DL counts grade >= 2 as relevant)."""
    levels = config["evaluate"]["split_relevance_level"]
    return levels.get(wildcards.split, config["evaluate"]["relevance_level"])


_EXPORT_NOTICES = set()


def export_input(wildcards):
    inputs = {"shards": corpus_shards(wildcards), "corpus_rows": f"{TOK}/corpus.rows.parquet"}
    if config["index"]["type"] != "flat":
        inputs["index"] = f"{run_dir(wildcards)}/index/{wildcards.system}/index.faiss"
    missing = [s for s in inputs["shards"] if not os.path.exists(s)]
    trained = f"{run_dir(wildcards)}/checkpoints/{wildcards.system}"
    # Say up front (while the DAG is built, dry runs included) that a finished checkpoint's deleted
    # vectors are encoded again: on MS MARCO that is encode.shards GPU jobs and 13.6 GB.
    if missing and os.path.exists(trained) and workflow.is_main_process and trained not in _EXPORT_NOTICES:
        _EXPORT_NOTICES.add(trained)
        print(f"NOTE: exporting {wildcards.system} ({trained}) needs its corpus vectors, and {len(missing)} of "
              f"{len(inputs['shards'])} shards were deleted after use (keep_intermediate: false): they are "
              "encoded again first (encode_corpus jobs). Set `export: true` to export during the run instead.",
              file=sys.stderr)
    return inputs


#: What comparison.tsv tests: every trained system against the equal-step BM25-Neg control and
#: against the warmup (round 0), on every evaluation split, per query, pooled over the seeds.
TRAINED = [f"round-{n}" for n in ROUNDS] + CONTROL
BASELINES = [b for b in ("bm25neg", "round-0") if b in TRAINED]


def comparison_plan(wildcards):
    """(system, split, seed) of each per-query table rule compare reads, in its inputs' order."""
    return [(system, split, seed) for seed in SEEDS for system in TRAINED for split in EVAL_SPLITS]


def comparison_input(wildcards):
    run = {seed: RUN.format(seed=seed) if MULTI_SEED else RES for seed in SEEDS}
    return {"per_query": [f"{run[seed]}/eval/{system}/{split}.per_query.tsv"
                          for system, split, seed in comparison_plan(wildcards)]}


def gpus_per_rule():
    """GPUs a rule's jobs ask for (the profile's `gpu` resource): for the GPU-hours in the report."""
    settings = workflow.resource_settings
    overwrite = settings.overwrite_resources if settings and settings.overwrite_resources else {}
    gpus = {}
    for rule, resources in overwrite.items():
        resource = resources.get("gpu")
        if resource is not None and not resource.is_evaluable():
            gpus[rule] = int(resource.value or 0)
    return gpus


def benchmark_dirs(wildcards):
    """Where this seed's jobs and the shared ones wrote their benchmark files."""
    return sorted({f"{run_dir(wildcards)}/benchmarks", f"{RES}/benchmarks"})
