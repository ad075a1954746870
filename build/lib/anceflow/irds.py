"""dataset.source ir_datasets: export ir_datasets ids into the "local" TSV layout.

``dataset.ir_datasets`` maps each split of the run to an ir_datasets id, e.g.
``{train: beir/scifact/train, test: beir/scifact/test}`` or ``{train: msmarco-passage/train/judged,
dev: msmarco-passage/dev/small}``. Rule download_ir_datasets (a local rule: ir_datasets downloads,
and the submit host has internet) iterates them with ir_datasets' public API and writes one folder::

    collection.tsv            pid<TAB>text | pid<TAB>title<TAB>text | pid<TAB>url<TAB>title<TAB>text
    queries.<split>.tsv       qid<TAB>text
    qrels.<split>.tsv         qid<TAB>0<TAB>pid<TAB>rel
    candidates.<split>.tsv    qid<TAB>pid, an evaluation split's scoreddocs (e.g. MS MARCO's top1000.dev)
    ir_datasets.json          the ids, ir_datasets' version, counts

which rule prepare then reads like any ``local`` folder (and validates). Everything streams: memory
holds one split's query ids at most (MS MARCO train: 808,731), never the collection.

ir_datasets downloads (md5-checked) into its own cache, ``IR_DATASETS_HOME`` (default
``~/.ir_datasets``), and reuses what it finds there: a machine without internet works from a copy
of that folder.
"""

from __future__ import annotations

import argparse
import difflib
import hashlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Iterable, Iterator, Mapping

from tqdm import tqdm

from anceflow.download import CHUNK_SIZE, DownloadError, _clean
from anceflow.errors import InputError
from anceflow.io import atomic_path

log = logging.getLogger(__name__)

# Bumped when what export() writes changes, so folders written before are not reused.
FORMAT = 1


def _irds():
    try:
        import ir_datasets
    except ImportError:
        raise ImportError("dataset.source ir_datasets needs the ir_datasets package: pip install 'ir_datasets>=0.6'") \
            from None
    return ir_datasets


def home() -> Path:
    """Where ir_datasets keeps (and looks for) its files."""
    return Path(os.environ.get("IR_DATASETS_HOME", Path.home() / ".ir_datasets"))


def _suggest(dataset_id: str, exclude: str | None = None) -> str:
    ids = [i for i in _irds().registry if i != exclude]
    parent = dataset_id.rsplit("/", 1)[0]
    near = [i for i in ids if i == parent or i.startswith(parent + "/")][:8]
    near = near or difflib.get_close_matches(dataset_id, ids, n=5, cutoff=0.6)
    return f" (known ids near it: {', '.join(near)})" if near else " (ir_datasets.readthedocs.io lists the ids)"


def id_problems(mapping: Mapping[str, str], splits: Iterable[str], eval_splits: Iterable[str]) -> list[str]:
    """What is wrong with ``dataset.ir_datasets`` for these splits, each naming its key: a split without an
    id, an unknown id, an id without queries or qrels, ids over more than one docs collection."""
    problems = []
    splits = list(dict.fromkeys(splits))
    missing = [s for s in splits if s not in mapping]
    if missing:
        example = ", ".join(f"{s}: <id>" for s in missing)
        problems.append(f"config key 'dataset.ir_datasets': no ir_datasets id for split(s) {', '.join(map(repr, missing))} "
                        f"(dataset.train_split and dataset.eval_splits each need one, e.g. {{{example}}})")
    try:
        irds = _irds()
    except ImportError as exc:
        return problems + [f"config key 'dataset.source': {exc}"]
    collections: dict[str, list[str]] = {}
    for split in splits:
        dataset_id = mapping.get(split)
        if dataset_id is None:
            continue
        key = f"config key 'dataset.ir_datasets.{split}'"
        if not isinstance(dataset_id, str) or dataset_id not in irds.registry:
            problems.append(f"{key}: {dataset_id!r} is not an ir_datasets id{_suggest(str(dataset_id))}")
            continue
        dataset = irds.load(dataset_id)
        lacks = [what for what, has in (("documents", dataset.has_docs()), ("queries", dataset.has_queries()),
                                        ("qrels", dataset.has_qrels())) if not has]
        if lacks:
            problems.append(f"{key}: {dataset_id!r} has no {' and no '.join(lacks)} (a split needs documents, "
                            f"queries and qrels){_suggest(dataset_id + '/x', dataset_id)}")
            continue
        collections.setdefault(irds.docs_parent_id(dataset_id), []).append(f"{split}: {dataset_id}")
    if len(collections) > 1:
        which = "; ".join(f"{docs} for {', '.join(uses)}" for docs, uses in collections.items())
        problems.append(f"config key 'dataset.ir_datasets': the ids must share one document collection, they use "
                        f"{len(collections)}: {which}")
    return problems


def docs_id(ids: Iterable[str]) -> str:
    """The ir_datasets id of the documents the ids share (``beir/scifact`` for ``beir/scifact/test``)."""
    return _irds().docs_parent_id(next(iter(ids)))


def candidate_splits(mapping: Mapping[str, str], eval_splits: Iterable[str]) -> list[str]:
    """Evaluation splits whose id has scoreddocs (a list to rerank). Never the training split:
    msmarco-passage/train's top1000 has 478 million rows."""
    irds = _irds()
    return [s for s in eval_splits if irds.load(mapping[s]).has_scoreddocs()]


def folder(download_dir: str | Path, mapping: Mapping[str, str], splits: Iterable[str],
           candidates: Iterable[str]) -> str:
    """The folder rule download_ir_datasets writes: per docs collection, one per set of split ids
    (``<download_dir>/ir_datasets/beir/scifact/<digest>``), so runs that ask for the same share it."""
    used = {s: mapping[s] for s in dict.fromkeys(splits)}
    key = json.dumps({"format": FORMAT, "splits": used, "candidates": sorted(candidates)}, sort_keys=True)
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return f"{download_dir}/ir_datasets/{docs_id(used.values())}/{digest}"


# --------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------


def _doc_layout(doc_cls) -> tuple[str | None, bool, bool]:
    """(text field, with title, with url) for an ir_datasets document class.

    A document with a string ``text`` or ``body`` field keeps it as its text and its ``title`` as the
    title column; ``url`` is kept for web documents (a ``body``: msmarco-document, whose url the ANCE
    reference feeds the model). Any other class (e.g. cord19's title/abstract, ClueWeb's HTML bytes)
    becomes its ``default_text()``, ir_datasets' own choice of what to search.
    """
    types = getattr(doc_cls, "__annotations__", {})
    text = "text" if types.get("text") is str else "body" if types.get("body") is str else None
    title = text is not None and types.get("title") is str
    url = text == "body" and title and types.get("url") is str
    return text, title, url


def _check_id(value, what: str, dataset_id: str) -> str:
    value = str(value)
    if not value or any(c.isspace() for c in value):
        raise InputError(f"ir_datasets {dataset_id}", f"{what} {value!r} is empty or contains whitespace; ids must not "
                                                       "(TREC runs split on it)")
    return value


def _query_text(query) -> str:
    return query.default_text() if hasattr(query, "default_text") else query.text


def _rows(records: Iterable, row, desc: str, progress: bool) -> Iterator[str]:
    for record in tqdm(records, desc=desc, unit=" rows", unit_scale=True, disable=not progress, mininterval=2,
                       leave=False):
        yield row(record)


def _write(path: Path, lines: Iterable[str]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8", newline="\n", buffering=CHUNK_SIZE) as out:
        for line in lines:
            out.write(line)
            n += 1
    return n


def _iterate(dataset_id: str, what: str, make):
    """Run ``make()`` (which iterates ir_datasets), turning a failed download or a missing file into an
    error that says which id and where ir_datasets looked."""
    try:
        return make()
    except (InputError, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - ir_datasets raises requests', OSError, RuntimeError, ...
        raise DownloadError(
            f"ir_datasets could not provide {dataset_id!r} ({what}): {type(exc).__name__}: {exc} "
            f"(ir_datasets keeps its downloads in IR_DATASETS_HOME={home()} and uses what it finds there: "
            "for a machine without internet, copy that folder from one that has run this)") from exc


def export(mapping: Mapping[str, str], out_dir: str | Path, *, candidates: Iterable[str] = (),
           progress: bool = True) -> dict:
    """Write the ids of ``mapping`` (split -> ir_datasets id, one docs collection) into ``out_dir`` in the
    local layout (module docstring); ``candidates``: the splits whose scoreddocs become candidates.<split>.tsv.

    Splits come first (small; a bad id or download fails before the collection is written), then the
    collection. ``out_dir`` is replaced atomically: complete or unchanged. Returns what ir_datasets.json
    holds.
    """
    irds = _irds()
    mapping = dict(mapping)
    candidates = set(candidates)
    collections = {irds.docs_parent_id(i) for i in mapping.values()}
    if len(collections) != 1:
        raise ValueError(f"the ids must share one document collection, they use {sorted(collections)}")
    docs = collections.pop()
    stats = {"ir_datasets": irds.__version__, "format": FORMAT, "docs": docs, "splits": {}}
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for split, dataset_id in mapping.items():
            stats["splits"][split] = _iterate(dataset_id, f"split {split!r}: queries, qrels, scoreddocs",
                                              lambda: _export_split(irds.load(dataset_id), dataset_id, split, tmp,
                                                                    split in candidates, progress))
        stats["documents"] = _iterate(docs, "the documents", lambda: _export_docs(irds.load(docs), docs, tmp, progress))
        (tmp / "ir_datasets.json").write_text(json.dumps({"ids": mapping, **stats}, indent=1) + "\n")
    log.info("ir_datasets export into %s: %s", out_dir, stats)
    return stats


def _export_split(dataset, dataset_id: str, split: str, out: Path, with_candidates: bool, progress: bool) -> dict:
    qids: set[str] = set()

    def query_row(q):
        qid = _check_id(q.query_id, "query id", dataset_id)
        qids.add(qid)
        return f"{qid}\t{_clean(_query_text(q))}\n"

    stats = {"id": dataset_id,
             "queries": _write(out / f"queries.{split}.tsv",
                               _rows(dataset.queries_iter(), query_row, f"{split} queries", progress))}
    # Judgments or candidates of a query the split does not have cannot be evaluated (there is no
    # query text); ir_datasets' own data, so they are dropped and counted rather than refused.
    dropped = {"qrels": 0, "candidates": 0}

    def known(records, kind):
        for r in records:
            if str(r.query_id) in qids:
                yield r
            else:
                dropped[kind] += 1

    def qrel_row(r):
        pid = _check_id(r.doc_id, "document id", dataset_id)
        return f"{r.query_id}\t0\t{pid}\t{int(r.relevance)}\n"

    stats["qrels"] = _write(out / f"qrels.{split}.tsv",
                            _rows(known(dataset.qrels_iter(), "qrels"), qrel_row, f"{split} qrels", progress))
    if with_candidates:
        def candidate_row(s):
            return f"{s.query_id}\t{_check_id(s.doc_id, 'document id', dataset_id)}\n"

        # In ir_datasets' order: the file's, which is rank order for TREC runs (MS MARCO's top1000
        # files carry no rank; the msmarco-passage source keeps their order too).
        stats["candidates"] = _write(out / f"candidates.{split}.tsv",
                                     _rows(known(dataset.scoreddocs_iter(), "candidates"), candidate_row,
                                           f"{split} candidates", progress))
    for kind, n in dropped.items():
        if n:
            log.warning("%s: %d %s name a query that is not among its queries; dropped", dataset_id, n, kind)
            stats[f"{kind}_dropped"] = n
    return stats


def _export_docs(dataset, dataset_id: str, out: Path, progress: bool) -> dict:
    text, title, url = _doc_layout(dataset.docs_cls())

    def doc_row(d):
        pid = _check_id(d.doc_id, "document id", dataset_id)
        if text is None:
            return f"{pid}\t{_clean(d.default_text())}\n"
        fields = [getattr(d, "url") if url else None, getattr(d, "title") if title else None, getattr(d, text)]
        return "\t".join([pid] + [_clean(f or "") for f, keep in zip(fields, (url, title, True)) if keep]) + "\n"

    n = _write(out / "collection.tsv", _rows(dataset.docs_iter(), doc_row, "collection", progress))
    columns = ["pid", *(["url"] if url else []), *(["title"] if title else []), "text"]
    return {"documents": n, "columns": columns, "text": text or "default_text()"}


def main(argv: Iterable[str] | None = None) -> int:
    """``python -m anceflow.irds OUT SPLIT=ID [...] [--candidates SPLIT ...]``: the export without Snakemake."""
    parser = argparse.ArgumentParser(prog="python -m anceflow.irds",
                                     description="Export ir_datasets ids into anceflow's local TSV layout.")
    parser.add_argument("out", type=Path, help="output folder (replaced)")
    parser.add_argument("ids", nargs="+", metavar="SPLIT=ID", help="e.g. train=beir/scifact/train test=beir/scifact/test")
    parser.add_argument("--candidates", nargs="*", default=[], metavar="SPLIT",
                        help="splits whose scoreddocs become candidates.<split>.tsv")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(None if argv is None else list(argv))
    mapping = dict(item.split("=", 1) for item in args.ids if "=" in item)
    if len(mapping) != len(args.ids):
        parser.error("ids are SPLIT=ID")
    problems = id_problems(mapping, mapping, [])
    if problems:
        print("error: " + "\n  ".join(problems), file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        export(mapping, args.out, candidates=args.candidates, progress=not args.no_progress)
    except (DownloadError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
