"""Shared fixtures: paths to the repo and to the real test collections."""

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATASETS = REPO.parent / "shared" / "datasets"


def dataset_dir(name: str) -> Path:
    """A real collection from ../shared/datasets; CI must have it, elsewhere the test is skipped."""
    path = DATASETS / name
    if not (path / "collection.tsv").exists():
        if os.environ.get("CI"):
            pytest.fail(f"{path} is missing: CI must run with ../shared/datasets beside the repo")
        pytest.skip(f"{path} not found (the shared test collections sit beside the repo)")
    return path
