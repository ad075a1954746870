"""Small I/O helpers shared by the stages."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(dest: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; rename it to ``dest`` only on success.

    A failure (bad input, Ctrl-C, a crash) leaves no partial ``dest`` behind, so a
    half-written file can never be mistaken for a finished one.  Works for files
    and for directories.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        _remove(dest)
        os.replace(tmp, dest)
    except BaseException:
        _remove(tmp)
        raise


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def staging_dir(out_dir: str | Path) -> Iterator[Path]:
    """Yield an empty folder inside ``out_dir``; on success its files move into ``out_dir``.

    For stages with several output files: all of them appear together, or none do.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(".staging-*"):  # left by a killed run
        _remove(stale)
    stage = out_dir / f".staging-{os.getpid()}"
    stage.mkdir()
    try:
        yield stage
        for item in stage.iterdir():
            _remove(out_dir / item.name)
            os.replace(item, out_dir / item.name)
    finally:
        _remove(stage)
