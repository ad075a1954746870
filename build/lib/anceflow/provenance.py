"""Provenance: what every checkpoint and every negatives file was made from, by hashes.

A checkpoint folder's ``manifest.json`` records the sha256 of each of its files and of the whole
folder, its parent (the checkpoint or pretrained model it started from) by hash, the negatives it
trained on by hash together with what mined them, the resolved settings, the code digest, package
versions, the device, steps and wall time. A negatives file's JSON records what mined it: BM25 and
its settings, or a checkpoint and that checkpoint's hash, plus the hash of the run it drew from.
``python -m anceflow.verify`` follows these links back to the pretrained model and BM25.

The folder hash is the sha256 of a ``sha256sum``-style listing (``<hex>  <relative path>``, one
line per file, sorted by path; dot-files and ``manifest.json`` left out), so it can be recomputed
without this project::

    cd checkpoints/round-1 && find . -type f ! -name manifest.json ! -path '*/.*' | sed 's|^\\./||' \\
        | LC_ALL=C sort | xargs -d '\\n' sha256sum | sha256sum

Hashing streams files in 8 MiB blocks (memory: one block), at ~0.8 GB/s from the page cache on
this project's machine (measured), so a roberta-base checkpoint (0.5 GB, 1.5 GB with the optimizer
state it carries to the next round) costs one to a few seconds, next to training's hours.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from anceflow.io import atomic_path

MANIFEST = "manifest.json"
FORMAT = 1
BLOCK = 8 << 20
#: Packages whose versions shape a checkpoint (recorded in its manifest).
PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "numpy", "pyarrow", "sentence-transformers")


def sha256_file(path: str | Path) -> str:
    """sha256 of a file, read in blocks (never the whole file in memory)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(BLOCK):
            digest.update(block)
    return digest.hexdigest()


def listed_files(folder: Path) -> list[Path]:
    # Dot-files are left out: a killed job's temporary files (.name.tmp-PID, .staging-PID) and
    # what file browsers add are not part of the checkpoint.
    return sorted((p for p in folder.rglob("*") if p.is_file()
                   and not any(part.startswith(".") for part in p.relative_to(folder).parts)
                   and p.relative_to(folder).as_posix() != MANIFEST),
                  key=lambda p: p.relative_to(folder).as_posix())


def hash_tree(folder: str | Path) -> dict[str, dict]:
    """``{relative path: {"sha256", "bytes"}}`` of every file in ``folder`` (see the module doc)."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): {"sha256": sha256_file(p), "bytes": p.stat().st_size}
            for p in listed_files(folder)}


def tree_digest(files: dict[str, dict]) -> str:
    """The folder hash: sha256 of the ``sha256sum`` listing of ``files`` in path order."""
    listing = "".join(f"{files[name]['sha256']}  {name}\n" for name in sorted(files))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def read_manifest(folder: str | Path) -> dict | None:
    path = Path(folder) / MANIFEST
    return json.loads(path.read_text()) if path.exists() else None


def relative(path: str | Path, root: str | Path) -> str:
    """``path`` relative to the results folder ``root`` when it lies inside it (so a moved or copied
    results folder still verifies), else absolute."""
    path, root = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def results_root(checkpoint: str | Path) -> Path:
    """The results folder of ``<root>/checkpoints/<system>`` (or of ``<root>/negatives/<file>``)."""
    return Path(os.path.abspath(checkpoint)).parent.parent


def source_entry(path: str | Path, root: str | Path, name: str | None = None) -> dict:
    """A parent or input by hash: a checkpoint of this results folder (``system``), or a pretrained
    model folder / file; a name that is not on disk (a hub id) is recorded without a hash."""
    entry = {"path": relative(path, root) if Path(path).exists() else str(path)}
    if name is not None:
        entry["name"] = name
    p = Path(path)
    if p.is_dir():
        manifest = read_manifest(p)
        files = hash_tree(p)
        entry["sha256"] = tree_digest(files)
        if manifest is not None:
            entry["system"] = manifest.get("system", p.name)
        entry["files"] = files  # so that verify can name the file that changed
    elif p.is_file():
        entry.update(sha256=sha256_file(p), bytes=p.stat().st_size)
    else:
        entry["sha256"] = None
    return entry


def negatives_entry(path: str | Path, root: str | Path) -> dict:
    """A negatives parquet and its JSON (what mined it, copied so the link survives the JSON)."""
    path = Path(path)
    entry = {"path": relative(path, root), "sha256": sha256_file(path)}
    stats = path.with_suffix(".json")
    if stats.exists():
        entry.update(stats=relative(stats, root), stats_sha256=sha256_file(stats))
        recorded = json.loads(stats.read_text())
        for key in ("mined_with", "mining"):
            if key in recorded:
                entry[key] = recorded[key]
    return entry


def packages() -> dict:
    versions = {"python": platform.python_version()}
    for name in ("anceflow", *PACKAGES):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            if name == "anceflow":
                from anceflow import __version__

                versions[name] = __version__
    torch = sys.modules.get("torch")  # never imported here: the mining and BM25 envs have no torch
    if torch is not None:
        versions["cuda"] = torch.version.cuda
    return versions


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(device=None, processes: int = 1, precision: str | None = None) -> dict:
    """What a job ran on: cpu or cuda with the GPU's name, processes (DDP world size), host."""
    kind = getattr(device, "type", "cpu")
    info = {"type": kind, "processes": processes, "host": platform.node()}
    if kind == "cuda":
        info["name"] = sys.modules["torch"].cuda.get_device_name(device)  # a cuda device: torch is loaded
    else:
        info["name"] = _cpu_name()
        info["threads"] = _torch_threads()
    if precision is not None:
        info["precision"] = precision
    return info


def _torch_threads() -> int | None:
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def write_checkpoint_manifest(folder: str | Path, *, system: str, **fields) -> dict:
    """Hash ``folder``'s files and write its ``manifest.json`` (called on the not yet renamed
    folder, so a checkpoint appears with its manifest or not at all)."""
    files = hash_tree(folder)
    manifest = {"format": FORMAT, "system": system, "created": now(),
                "weights": {"sha256": tree_digest(files), "files": files}, **fields}
    with atomic_path(Path(folder) / MANIFEST) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def mining_provenance(negatives: str | Path, *, run: str | Path, checkpoint: str | Path | None = None,
                      bm25: dict | None = None) -> dict:
    """What a negatives file was mined with, for its JSON: ``{"mined_with": "bm25", "mining": {bm25
    settings, ...}}`` or ``{"mined_with": "round-k", "mining": {checkpoint hash, ...}}``, with the
    hashes of the negatives file itself and of the run they were drawn from.

    The checkpoint's hash is read from its manifest (hashed here if it has none). The run is an
    input of the mining job, so it exists now; it is often deleted later (an intermediate file).
    """
    root = results_root(negatives)
    mining = {"negatives": relative(negatives, root), "negatives_sha256": sha256_file(negatives),
              "run": relative(run, root), "run_sha256": sha256_file(run)}
    if checkpoint is None:
        return {"mined_with": "bm25", "mining": {"bm25": dict(bm25 or {}), **mining}}
    manifest = read_manifest(checkpoint)
    digest = manifest["weights"]["sha256"] if manifest else tree_digest(hash_tree(checkpoint))
    system = manifest.get("system", Path(checkpoint).name) if manifest else Path(checkpoint).name
    return {"mined_with": system,
            "mining": {"checkpoint": relative(checkpoint, root), "checkpoint_sha256": digest, **mining}}
