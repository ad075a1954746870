# Shared set-up: config validation, output paths, and input functions.
import os
import re
import sys

# The logic lives in the anceflow package at the repo root (scripts find it the same way,
# through snakemake.scriptdir, so it works inside per-rule conda envs too).
sys.path.insert(0, workflow.basedir)

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
    return []


RERANK_SPLITS = rerank_splits()


def system_metrics(system):
    metrics = [f"{RES}/eval/{system}/{split}.metrics.tsv" for split in EVAL_SPLITS]
    if system != "bm25":
        metrics += [f"{RES}/eval/{system}/{split}.rerank.metrics.tsv" for split in RERANK_SPLITS]
    return metrics


def all_outputs():
    return [
        f"{RES}/metrics.tsv",
        f"{RES}/report/metrics.png",
        f"{RES}/negatives/round-0.parquet",
        *tokenized("corpus"),
        *[path for split in SPLITS for path in tokenized(f"queries.{split}")],
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
    return f"{RES}/checkpoints/zeroshot" if n == 0 else f"{RES}/checkpoints/round-{n - 1}"


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
        "seed": config["seed"] + n,
        "save_optimizer": carries_optimizer(n + 1) and n < ANCE["rounds"],
        "init_optimizer": f"{RES}/checkpoints/round-{n - 1}/optimizer.pt" if carries_optimizer(n) else None,
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
        "seed": config["seed"] + ANCE["rounds"] + 1,
        "save_optimizer": False,
        "init_optimizer": f"{RES}/checkpoints/round-0/optimizer.pt" if ANCE["carry_optimizer"] == "all" else None,
        **ance_schedule(0),
    }


def mining_input(wildcards):
    n = int(wildcards.n)
    run = f"{RES}/runs/round-{mining_round(n)}/{TRAIN_SPLIT}"
    inputs = {
        "run": f"{run}.rows.npy",
        "scores": f"{run}.scores.npy",
        "positives": f"{run}.positives.parquet",
        "queries": f"{PREP}/queries.{TRAIN_SPLIT}.parquet",
        "collection": f"{PREP}/collection.parquet",
        "qrels": f"{PREP}/qrels.{TRAIN_SPLIT}.parquet",
        "previous": f"{RES}/negatives/round-{n - 1}.parquet",
    }
    if FETCH_CROSS_ENCODER:
        inputs["cross_encoder"] = CROSS_ENCODER_PATH
    return inputs


def audit_input(wildcards):
    """What the audit of round n's negatives reads: its negatives, the judgments, the token ids."""
    return {
        "negatives": f"{RES}/negatives/round-{wildcards.n}.parquet",
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
    """What a checkpoint's search job writes: a run per evaluation split, a reranked run per split
    with candidates, and for a mining checkpoint the training split's rows."""
    outputs = [f"{RES}/runs/{{system}}/{split}.trec" for split in EVAL_SPLITS]
    outputs += [f"{RES}/runs/{{system}}/{split}.rerank.trec" for split in RERANK_SPLITS]
    if mining:
        outputs.append(intermediate(f"{RES}/runs/{{system}}/{TRAIN_SPLIT}.rows.npy"))
    return outputs


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
        "queries": [f"{RES}/embeddings/{wildcards.system}/queries.{split}.npy" for split in splits],
        "query_rows": [f"{TOK}/queries.{split}.rows.parquet" for split in splits],
        "candidates": [f"{PREP}/candidates.{split}.parquet" for split in RERANK_SPLITS],
        "corpus_rows": f"{TOK}/corpus.rows.parquet",
        "collection": f"{PREP}/collection.parquet",
    }
    if config["index"]["type"] != "flat":
        inputs["index"] = f"{RES}/index/{wildcards.system}/index.faiss"
    if wildcards.system in MINING_SYSTEMS:
        inputs["qrels"] = f"{PREP}/qrels.{TRAIN_SPLIT}.parquet"  # the positives' scores
    return inputs


def corpus_shards(wildcards):
    return [
        f"{RES}/embeddings/{wildcards.system}/corpus.{shard}.npy"
        for shard in range(config["encode"]["shards"])
    ]


def training_logs(wildcards):
    return [f"{RES}/train/round-{n}.log.csv" for n in ROUNDS] + [f"{RES}/train/{c}.log.csv" for c in CONTROL]


def mining_stats(wildcards):
    return [f"{RES}/negatives/round-{n}.json" for n in ROUNDS]


def audits(wildcards):
    return [f"{RES}/negatives/round-{n}.audit.json" for n in ROUNDS]


def relevance_level(wildcards):
    """evaluate.relevance_level, or the split's own (TREC DL counts grade >= 2 as relevant)."""
    levels = config["evaluate"]["split_relevance_level"]
    return levels.get(wildcards.split, config["evaluate"]["relevance_level"])


def export_input(wildcards):
    inputs = {"shards": corpus_shards(wildcards), "corpus_rows": f"{TOK}/corpus.rows.parquet"}
    if config["index"]["type"] != "flat":
        inputs["index"] = f"{RES}/index/{wildcards.system}/index.faiss"
    return inputs
