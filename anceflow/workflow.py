"""Glue for ``workflow/scripts``: logging to the rule's log file, clear errors, no pointless retries."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path

from anceflow.errors import INTERRUPTED_EXIT, InputError, PermanentError

PACKAGE = Path(__file__).resolve().parent


def _file_signature(path: Path) -> list:
    """Size and modification time of a file, or of every file under a folder."""
    if path.is_dir():
        return [[str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns]
                for p in sorted(path.rglob("*")) if p.is_file()]
    return [path.stat().st_size, path.stat().st_mtime_ns] if path.exists() else None


def job_fingerprint(snakemake) -> str:
    """What decides a job's result: its rule, wildcards, params, threads, GPU-related resources, the
    versions (size, time) of its inputs, anceflow's code and the GPUs it sees. Runtime and memory are
    left out: a retry may be given more of them, and a failure they cause is not permanent."""
    resources = {k: v for k, v in dict(snakemake.resources.items()).items()
                 if not k.startswith("_") and k not in ("runtime", "mem_mb", "mem_mib", "mem", "tmpdir",
                                                        "disk_mb", "disk_mib", "disk")}
    code = hashlib.sha1()
    for module in sorted(PACKAGE.rglob("*.py")):
        code.update(module.read_bytes())
    parts = {
        "rule": snakemake.rule,
        "wildcards": dict(snakemake.wildcards.items()),
        "params": {k: repr(v) for k, v in snakemake.params.items()},
        "threads": snakemake.threads,
        "resources": {k: repr(v) for k, v in resources.items()},
        "inputs": {f: _file_signature(Path(f)) for f in snakemake.input},
        "code": code.hexdigest(),
        "gpus": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def permanent_failure_marker(log_path: str | os.PathLike) -> Path:
    """Where a job records a failure that running it again cannot change (beside its log)."""
    return Path(f"{log_path}.permanent.json")


@contextlib.contextmanager
def script_logging(snakemake):
    """Send logging and stderr (progress bars) to ``snakemake.log[0]``; jobs run with the hub off.

    A failure is written to the log and, as one clear line, to the console, so the user sees
    what is wrong without opening the log. A :class:`~anceflow.errors.PermanentError` (bad input,
    a bad setting, the CPU guard) also leaves a marker beside the log with the job's fingerprint:
    when the same job runs again with the same inputs, settings and code (Snakemake's retries, or
    a re-run before anything was fixed), it fails at once with the same message instead of
    redoing the work; anything else (out of memory, a time limit, a node failure) retries as usual.
    """
    if snakemake.rule not in ("fetch_model", "fetch_cross_encoder"):
        # Jobs load models from disk (fetch_model put hub models there on the submit host): never the
        # hub, which compute nodes may not reach.
        os.environ["HF_HUB_OFFLINE"] = "1"
    log_path = snakemake.log[0] if snakemake.log else None
    if log_path is None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        yield logging.getLogger("anceflow")
        return
    console = sys.stderr
    marker = permanent_failure_marker(log_path)
    fingerprint = job_fingerprint(snakemake)
    if marker.exists():
        before = json.loads(marker.read_text())
        if before.get("fingerprint") == fingerprint:
            message = (f"\nERROR in rule {snakemake.rule} ({before['kind']}, not run again): {before['error']}\n"
                       f"  This job failed this way at {before['time']} with the same inputs, settings and code, "
                       f"so running it again cannot help: fix what the message names (or delete {marker} to "
                       f"force a run).\n")
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(message + "\nThe earlier run's traceback:\n" + before.get("traceback", ""))
            print(message + f"  log: {log_path}\n", file=console)
            raise SystemExit(1)
        marker.unlink()
    with open(log_path, "a", encoding="utf-8", buffering=1) as fh:
        logging.basicConfig(level=logging.INFO, stream=fh, force=True,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        sys.stderr = fh
        try:
            yield logging.getLogger("anceflow")
        except SystemExit as exc:
            if exc.code == INTERRUPTED_EXIT:  # training saved its state on SIGTERM
                print(f"\nrule {snakemake.rule} stopped by SIGTERM after saving its state; "
                      f"re-running the job resumes it. Log: {log_path}\n", file=console)
            raise
        except BaseException as exc:
            traceback.print_exc(file=fh)
            kind = "bad input" if isinstance(exc, InputError) else type(exc).__name__
            print(f"\nERROR in rule {snakemake.rule} ({kind}): {exc}\n  full log: {log_path}\n", file=console)
            if isinstance(exc, PermanentError):
                # Beside the log, which Snakemake starts afresh for a retry; the traceback goes along.
                marker.write_text(json.dumps({"fingerprint": fingerprint, "kind": kind, "error": str(exc),
                                              "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                                              "traceback": traceback.format_exc()}, indent=1))
            raise
        finally:
            log_gpu_peak()
            sys.stderr = console


def log_gpu_peak() -> None:
    """Log the job's peak GPU memory (what torch allocated, the largest over its GPUs), where the job
    used one: bench/gpu_check.py reads it from the logs, and it sizes a job's GPU on a cluster."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return
    peak = max(torch.cuda.max_memory_allocated(d) for d in range(torch.cuda.device_count()))
    logging.getLogger("anceflow").info("peak GPU memory: %.0f MiB", peak / 2**20)
