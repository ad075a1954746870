# Shared set-up: config validation, output paths, and input functions.
import os
import re
import sys

# The logic lives in the anceflow package at the repo root (scripts find it the same way,
# through snakemake.scriptdir, so it works inside per-rule conda envs too).
sys.path.insert(0, workflow.basedir)

from anceflow import config as anceflow_config
from anceflow.models import model_tag, needs_fetch

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
ROUNDS = list(range(ANCE["rounds"] + 1))  # round 0 is the warmup
# Systems in metrics.tsv: BM25, the pretrained model as is, and every round.
DENSE_SYSTEM = r"zeroshot|round-\d+"
SYSTEMS = ["bm25", "zeroshot", *[f"round-{n}" for n in ROUNDS]]


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


def system_metrics(system):
    return [f"{RES}/eval/{system}/{split}.metrics.tsv" for split in EVAL_SPLITS]


def all_outputs():
    return [
        f"{RES}/metrics.tsv",
        f"{RES}/report/metrics.png",
        f"{RES}/negatives/round-0.parquet",
        *tokenized("corpus"),
        *[path for split in SPLITS for path in tokenized(f"queries.{split}")],
    ]


def encoder_spec(wildcards):
    """How the model is used (pooling, head, similarity, sharing): fixed when training starts."""
    return {
        "pooling": MODEL["pooling"],
        "head": MODEL["head"],
        "similarity": MODEL["similarity"],
        "shared": MODEL["shared_encoder"],
    }


def train_init(wildcards):
    n = int(wildcards.n)
    return f"{RES}/checkpoints/zeroshot" if n == 0 else f"{RES}/checkpoints/round-{n - 1}"


def train_settings(wildcards):
    """Training settings of round n (params, so changing one re-runs that training)."""
    n = int(wildcards.n)
    carry = ANCE["carry_optimizer"]
    # save_every and log_every are bookkeeping: the script reads them from the config, so that
    # changing them does not make finished training stale.
    bookkeeping = ("save_every", "log_every")
    return {
        **{k: v for k, v in config["train"].items() if k not in bookkeeping},
        "steps": config["warmup"]["steps"] if n == 0 else ANCE["steps_per_round"],
        "lr": (config["warmup"]["lr"] or config["train"]["lr"]) if n == 0 else config["train"]["lr"],
        "epochs": config["warmup"]["epochs"] if n == 0 else None,
        "seed": config["seed"] + n,
        "save_optimizer": carry,
        "init_optimizer": f"{RES}/checkpoints/round-{n - 1}/optimizer.pt" if carry and n > 0 else None,
    }


def mining_input(wildcards):
    n = int(wildcards.n)
    return {
        "run": f"{RES}/runs/round-{mining_round(n)}/{TRAIN_SPLIT}.rows.npy",
        "queries": f"{PREP}/queries.{TRAIN_SPLIT}.parquet",
        "collection": f"{PREP}/collection.parquet",
        "qrels": f"{PREP}/qrels.{TRAIN_SPLIT}.parquet",
        "previous": f"{RES}/negatives/round-{n - 1}.parquet",
    }


def search_plan(wildcards):
    """(split, depth) of each split a checkpoint's search job covers, in its outputs' order."""
    plan = [(split, config["evaluate"]["depth"]) for split in EVAL_SPLITS]
    if wildcards.system in MINING_SYSTEMS:
        plan.append((TRAIN_SPLIT, ANCE["topk"]))
    return plan


def search_input(wildcards):
    splits = [split for split, _ in search_plan(wildcards)]
    inputs = {
        "shards": corpus_shards(wildcards),
        "queries": [f"{RES}/embeddings/{wildcards.system}/queries.{split}.npy" for split in splits],
        "query_rows": [f"{TOK}/queries.{split}.rows.parquet" for split in splits],
        "corpus_rows": f"{TOK}/corpus.rows.parquet",
        "collection": f"{PREP}/collection.parquet",
    }
    if config["index"]["type"] != "flat":
        inputs["index"] = f"{RES}/index/{wildcards.system}/index.faiss"
    return inputs


def corpus_shards(wildcards):
    return [
        f"{RES}/embeddings/{wildcards.system}/corpus.{shard}.npy"
        for shard in range(config["encode"]["shards"])
    ]


def training_logs(wildcards):
    return [f"{RES}/train/round-{n}.log.csv" for n in ROUNDS]


def mining_stats(wildcards):
    return [f"{RES}/negatives/round-{n}.json" for n in ROUNDS]


def module_source(*modules):
    """A digest of library modules' source, as a param: editing their code re-runs the rule."""
    import hashlib

    digest = hashlib.sha1()
    for module in modules:
        with open(f"{workflow.basedir}/anceflow/{module}.py", "rb") as fh:
            digest.update(fh.read())
    return digest.hexdigest()[:16]


def relevance_level(wildcards):
    """evaluate.relevance_level, or the split's own (TREC DL counts grade >= 2 as relevant)."""
    levels = config["evaluate"]["split_relevance_level"]
    return levels.get(wildcards.split, config["evaluate"]["relevance_level"])
