"""Which splits a dataset has, and the error for one it lacks (shared by config checks and prepare)."""

from __future__ import annotations

from pathlib import Path


def split_message(where: str, split: str, available: list[str], beir: bool = False) -> str:
    """What to say when a dataset has no qrels for a split the config asks for: the splits it has, and
    the keys that choose among them."""
    have = ", ".join(repr(s) for s in available) or "none"
    hint = " (BEIR calls its evaluation split 'test')" if beir else ""
    train = "train" if "train" in available else None
    evaluate = "test" if "test" in available else next((s for s in available if s != train), None)
    example = ", ".join(([f"train_split: {train}"] if train else []) + ([f"eval_splits: [{evaluate}]"] if evaluate else []))
    return (f"{where} has no qrels for split {split!r}; its splits are {have}{hint}. Choose among them with "
            f"dataset.train_split and dataset.eval_splits" + (f" (e.g. dataset: {{{example}}})" if example else ""))


def beir_split_message(where: str, split: str, available: list[str]) -> str:
    return split_message(where, split, available, beir=True)


def beir_folder_splits(folder: str | Path) -> list[str]:
    """The splits a BEIR folder has qrels for (qrels/<split>.tsv)."""
    return sorted(p.stem for p in Path(folder, "qrels").glob("*.tsv"))


def local_folder_splits(folder: str | Path) -> list[str]:
    """The splits a folder in the local layout has (queries.<split>.tsv and qrels.<split>.tsv)."""
    folder = Path(folder)
    return sorted(p.name[len("qrels."):-len(".tsv")] for p in folder.glob("qrels.*.tsv")
                  if (folder / p.name.replace("qrels.", "queries.", 1)).exists())
