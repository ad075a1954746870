"""Download MS MARCO / TREC DL 2019 / BEIR and normalize them into the "local" layout.

The "local" layout written by :func:`fetch_msmarco` (all files UTF-8, tab-separated,
one record per line, no header)::

    collection.tsv            passage: pid<TAB>text
                              doc:     pid<TAB>url<TAB>title<TAB>text
    queries.<split>.tsv       qid<TAB>text
    qrels.<split>.tsv         qid<TAB>0<TAB>pid<TAB>rel      (TREC qrels, NIST grades kept)
    candidates.<split>.tsv    qid<TAB>pid                     (dev, dl19, dl20; file order)
    raw/                      the downloaded source files (default cache)

with ``<split>`` in ``train``, ``dev``, ``dl19``, ``dl20`` (TREC DL 2019 and 2020).  Ids are copied verbatim: MS MARCO
document ids keep their ``D`` prefix (``D1555982``).

Only the standard library talks to the network (``urllib``), so downloads work in a
bare environment.  Everything is streamed: the document corpus is 22 GB uncompressed.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import http.client
import os
import re
import shutil
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from tqdm import tqdm

from anceflow.errors import InputError
from anceflow.io import atomic_path

# The historical msmarco.blob.core.windows.net links (still used by microsoft/ANCE's
# commands/data_download.sh) are dead; this is the mirror ir_datasets uses today.
MSMARCO_BASE_URL = "https://msmarco.z22.web.core.windows.net/msmarcoranking/"
NIST_BASE_URL = "https://trec.nist.gov/data/deep/"
BEIR_BASE_URL = "https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/"

CHUNK_SIZE = 1 << 20  # 1 MiB: large enough for throughput, small enough for memory
RETRY_BACKOFF_S = 2.0  # first retry waits this long, then doubles (tests set it to 0)
_MAX_BACKOFF_S = 60.0
_USER_AGENT = "anceflow-download/0.1 (+python urllib)"


class DownloadError(RuntimeError):
    """A download failed for good (non-transient HTTP error or retries exhausted)."""


class ChecksumError(DownloadError):
    """The downloaded bytes do not have the expected md5."""


@dataclass(frozen=True)
class RemoteFile:
    """One downloadable file: ``path`` relative to a base URL, and its md5 (or None).

    ``base`` says which base URL ``path`` is relative to: ``"msmarco"`` (the MS MARCO
    mirror) or ``"nist"`` (trec.nist.gov, where the TREC DL judgments live).
    """

    path: str
    md5: str | None
    base: str = "msmarco"

    def url(self, base_url: str, nist_base_url: str) -> str:
        base = nist_base_url if self.base == "nist" else base_url
        return base.rstrip("/") + "/" + self.path.lstrip("/")


# --------------------------------------------------------------------------------------
# File tables.  Which files: microsoft/ANCE commands/data_download.sh (plus the doc dev
# qrels, which ANCE never downloads but our dev split needs).  MD5s: allenai/ir_datasets
# ir_datasets/etc/downloads.json (entry named in each comment).
# --------------------------------------------------------------------------------------

MSMARCO_PASSAGE_FILES: dict[str, RemoteFile] = {
    # msmarco-passage/collectionandqueries.  Holds collection.tsv, queries.{train,dev,
    # dev.small,eval,eval.small}.tsv, qrels.train.tsv and qrels.dev.small.tsv.
    "collectionandqueries": RemoteFile(
        "collectionandqueries.tar.gz", "31644046b18952c1386cd4564ba2ae69"),
    # msmarco-passage/train/qrels.  Only fetched when the tarball lacks qrels.train.tsv.
    "qrels.train": RemoteFile("qrels.train.tsv", "733fb9fe12d93e497f7289409316eccf"),
    # msmarco-passage/dev/scoreddocs.  Member top1000.dev: qid, pid, query, passage.
    "top1000.dev": RemoteFile("top1000.dev.tar.gz", "8c140662bdf123a98fbfe3bb174c5831"),
    # msmarco-passage/trec-dl-2019/queries (200 queries, 43 of them judged).
    "dl19.queries": RemoteFile(
        "msmarco-test2019-queries.tsv.gz", "eda71eccbe4d251af83150abe065368c"),
    # msmarco-passage/trec-dl-2019/qrels ("qid Q0 pid grade", grades 0-3).
    "dl19.qrels": RemoteFile("2019qrels-pass.txt", "2f4be390198da108f6845c822e5ada14", "nist"),
    # msmarco-passage/trec-dl-2019/scoreddocs: qid, pid, query, passage.
    "dl19.top1000": RemoteFile(
        "msmarco-passagetest2019-top1000.tsv.gz", "ec9e012746aa9763c7ff10b3336a3ce1"),
    # msmarco-passage/trec-dl-2020/{queries,qrels,scoreddocs} (200 queries, 54 judged).
    "dl20.queries": RemoteFile(
        "msmarco-test2020-queries.tsv.gz", "00a406fb0d14ed3752d70d1e4eb98600"),
    "dl20.qrels": RemoteFile("2020qrels-pass.txt", "0355ccee7509ac0463e8278186cdd8d1", "nist"),
    "dl20.top1000": RemoteFile(
        "msmarco-passagetest2020-top1000.tsv.gz", "aa6fbc51d66bd1dc745964c0e140a727"),
}

MSMARCO_DOC_FILES: dict[str, RemoteFile] = {
    # No md5: ir_datasets downloads the TREC-formatted msmarco-docs.trec.gz instead of
    # this TSV (docid, url, title, body), so it has no checksum for this file.
    "docs": RemoteFile("msmarco-docs.tsv.gz", None),
    # msmarco-document/train/queries and train/qrels ("qid 0 docid 1").
    "train.queries": RemoteFile(
        "msmarco-doctrain-queries.tsv.gz", "4086d31a9cf2d7b69c4932609058111d"),
    "train.qrels": RemoteFile(
        "msmarco-doctrain-qrels.tsv.gz", "9d1609e240113b0504fd2e61cb36d924"),
    # msmarco-document/dev/queries, dev/qrels and dev/scoreddocs (TREC run format).
    "dev.queries": RemoteFile(
        "msmarco-docdev-queries.tsv.gz", "ac20593d71b9c32ab2633230f9cdf10d"),
    "dev.qrels": RemoteFile("msmarco-docdev-qrels.tsv.gz", "5eeafaeb4960979a62e7fed93273254e"),
    "dev.top100": RemoteFile("msmarco-docdev-top100.gz", "ac10255edf321821b0ccd0f123037780"),
    # msmarco-document/trec-dl-2019/{queries,qrels,scoreddocs}; same queries file as the
    # passage task.
    "dl19.queries": RemoteFile(
        "msmarco-test2019-queries.tsv.gz", "eda71eccbe4d251af83150abe065368c"),
    "dl19.qrels": RemoteFile("2019qrels-docs.txt", "d7ef53b995ef7e01676ea85d7ec01dda", "nist"),
    "dl19.top100": RemoteFile(
        "msmarco-doctest2019-top100.gz", "91071b89dd52124057a87d53cd22028d"),
    # msmarco-document/trec-dl-2020/{queries,qrels,scoreddocs} (200 queries, 45 judged).
    "dl20.queries": RemoteFile(
        "msmarco-test2020-queries.tsv.gz", "00a406fb0d14ed3752d70d1e4eb98600"),
    "dl20.qrels": RemoteFile("2020qrels-docs.txt", "e10f3545583b124a4ed5e7992293e15a", "nist"),
    "dl20.top100": RemoteFile(
        "msmarco-doctest2020-top100.gz", "96f39dae3443736bd6393bd09a5a0a20"),
}

# Looked up at call time, so tests (or a mirror with repacked files) can swap a table.
MSMARCO_FILES: dict[str, dict[str, RemoteFile]] = {
    "msmarco-passage": MSMARCO_PASSAGE_FILES,
    "msmarco-doc": MSMARCO_DOC_FILES,
}

# md5 of <BEIR_BASE_URL>/<name>.zip, from ir_datasets downloads.json "beir" entries.
# webis-touche2020 is ir_datasets' "webis-touche2020/v2" (the UKP zip; its plain entry
# points at a different mirror).
BEIR_MD5: dict[str, str] = {
    "msmarco": "444067daf65d982533ea17ebd59501e4",
    "trec-covid": "ce62140cb23feb9becf6270d0d1fe6d1",
    "nfcorpus": "a89dba18a62ef92f7d323ec890a0d38d",
    "nq": "d4d3d2e48787a744b6f6e691ff534307",
    "hotpotqa": "f412724f78b0d91183a0e86805e16114",
    "fiqa": "17918ed23cd04fb15047f73e6c3bd9d9",
    "arguana": "8ad3e3c2a5867cdced806d6503f29b99",
    "webis-touche2020": "46f650ba5a527fc69e0a6521c5a23563",
    "cqadupstack": "4e41456d7df8ee7760a7f866133bda78",
    "quora": "18fb154900ba42a600f84b839c173167",
    "dbpedia-entity": "c2a39eb420a3164af735795df012ac2c",
    "scidocs": "38121350fc3a4d2f48850f6aff52e4a9",
    "fever": "5a818580227bfb4b35bb6fa46d9b6c03",
    "climate-fever": "8b66f0a9126c521bae2bde127b4dc99d",
    "scifact": "5f7d1de60b170fc8027bb7898e2efca1",
}

# The qrels/<split>.tsv each BEIR zip holds (ir_datasets/datasets/beir.py, "benchmarks"), so that a
# split a dataset lacks stops the run before the download. BEIR calls its evaluation split "test".
BEIR_SPLITS: dict[str, tuple[str, ...]] = {
    "msmarco": ("train", "dev", "test"),
    "trec-covid": ("test",),
    "nfcorpus": ("train", "dev", "test"),
    "nq": ("test",),
    "hotpotqa": ("train", "dev", "test"),
    "fiqa": ("train", "dev", "test"),
    "arguana": ("test",),
    "webis-touche2020": ("test",),
    "quora": ("dev", "test"),
    "dbpedia-entity": ("dev", "test"),
    "scidocs": ("test",),
    "fever": ("train", "dev", "test"),
    "climate-fever": ("test",),
    "scifact": ("train", "test"),
}


# --------------------------------------------------------------------------------------
# Downloading
# --------------------------------------------------------------------------------------


def md5sum(path: str | Path) -> str:
    """Hex md5 of a file, read in chunks."""
    return _hash_file(Path(path)).hexdigest()


def _hash_file(path: Path) -> "hashlib._Hash":
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK_SIZE), b""):
            digest.update(chunk)
    return digest


def download_file(
    url: str,
    dest: str | Path,
    *,
    md5: str | None = None,
    progress: bool = True,
    retries: int = 3,
    timeout: float = 60,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``.

    * If ``dest`` exists and matches ``md5`` (or no ``md5`` is given) nothing is fetched.
    * Bytes go to ``dest + ".part"``; an existing ``.part`` is resumed with an HTTP
      ``Range`` request.  A server that ignores the range (answers 200, not 206) gets
      the file fetched again from the start.
    * Transient network failures (timeouts, resets, truncated bodies, HTTP 5xx/429/408)
      are retried up to ``retries`` times with exponential backoff; the ``.part`` is
      kept, so the retry (or a later call) resumes where the last one stopped.
    * With ``md5``, a mismatch deletes the ``.part`` and raises :class:`ChecksumError`
      naming the URL and both checksums.  Only a verified file is renamed to ``dest``
      (``os.replace``, atomic), so ``dest`` is never partial.
    """
    dest = Path(dest)
    expected = md5.lower() if md5 else None
    if dest.exists():
        if expected is None or md5sum(dest) == expected:
            return dest
        dest.unlink()  # known-bad copy: never leave it where a consumer could read it
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")

    attempt = 0
    while True:
        try:
            digest = _fetch_into_part(url, part, desc=dest.name, progress=progress,
                                      timeout=timeout)
            break
        except Exception as exc:  # noqa: BLE001 - classified right below
            if not _is_transient(exc):
                raise DownloadError(f"{url}: {exc}") from exc
            if attempt >= retries:
                raise DownloadError(
                    f"{url}: giving up after {attempt + 1} attempts: {exc!r} "
                    f"(partial data kept in {part}; run again to resume)") from exc
            attempt += 1
            time.sleep(min(RETRY_BACKOFF_S * 2 ** (attempt - 1), _MAX_BACKOFF_S))

    actual = digest.hexdigest()
    if expected is not None and actual != expected:
        part.unlink(missing_ok=True)  # resuming corrupt bytes would never succeed
        raise ChecksumError(
            f"md5 mismatch for {url}: expected {expected}, got {actual} "
            f"(deleted the download; rerun to fetch it again)")
    os.replace(part, dest)
    return dest


class _TransientError(ConnectionError):
    """Raised by us for retryable conditions the HTTP stack does not flag itself."""


def _fetch_into_part(url: str, part: Path, *, desc: str, progress: bool,
                     timeout: float) -> "hashlib._Hash":
    """One HTTP attempt: append to (or restart) ``part``; return the md5 of all of it."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": _USER_AGENT}
    host = urllib.parse.urlsplit(url).hostname or ""
    if host.endswith(".core.windows.net"):
        # ir_datasets sends this header for the big MS MARCO files; it pins a modern
        # Azure storage API version (older defaults treat Range requests differently).
        headers["X-Ms-Version"] = "2019-12-12"
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and offset:
            # Range past the end: either the .part already holds the whole file (a
            # crash between the last byte and the rename) or the remote file shrank.
            total = _content_range_total(exc.headers.get("Content-Range"))
            exc.close()
            if total == offset:
                return _hash_file(part)
            part.unlink()
            raise _TransientError(f"stale partial download ({offset} bytes) discarded")
        raise

    with response:
        if offset and response.status == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start != offset:
                part.unlink()
                raise _TransientError(
                    f"server sent bytes from {start}, asked for {offset}; restarting")
            mode, digest = "ab", _hash_file(part)
        else:
            # No offset, or the server ignored Range and sends everything: restart.
            offset, mode, digest = 0, "wb", hashlib.md5()
        length = response.headers.get("Content-Length")
        remaining = int(length) if length is not None else None
        total = offset + remaining if remaining is not None else None
        received = 0
        with open(part, mode) as out, tqdm(
            total=total, initial=offset, desc=desc, unit="B", unit_scale=True,
            unit_divisor=1024, disable=not progress, leave=False,
        ) as bar:
            while True:
                chunk = response.read(CHUNK_SIZE)
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    # http.client returns b"" (no exception) when the peer closes early, so a cut
    # connection is only visible as a short body.
    if remaining is not None and received < remaining:
        raise _TransientError(
            f"connection closed after {offset + received} of {total} bytes")
    return digest


def _content_range_start(value: str | None) -> int | None:
    match = re.match(r"\s*bytes\s+(\d+)-", value or "")
    return int(match.group(1)) if match else None


def _content_range_total(value: str | None) -> int | None:
    match = re.search(r"/(\d+)\s*$", value or "")
    return int(match.group(1)) if match else None


_TRANSIENT_HTTP = {408, 425, 429, 500, 502, 503, 504}


def _is_transient(exc: BaseException) -> bool:
    """True for failures worth retrying: the network, not the request, is at fault."""
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code in _TRANSIENT_HTTP
    # URLError wraps connection refused / DNS / timeouts raised while connecting.
    return isinstance(exc, (urllib.error.URLError, http.client.HTTPException,
                            ConnectionError, TimeoutError))


# --------------------------------------------------------------------------------------
# Archives
# --------------------------------------------------------------------------------------


def extract(archive: str | Path, dest_dir: str | Path) -> Path:
    """Unpack ``archive`` (.tar.gz/.tgz/.tar, .zip, or a single-file .gz) into ``dest_dir``.

    Extraction happens in a temporary folder that is renamed to ``dest_dir`` only when
    complete (``dest_dir`` is replaced if it exists), so an interrupted extraction never
    looks finished.  A single-file ``.gz`` becomes ``dest_dir/<name without .gz>``.
    Returns ``dest_dir``.
    """
    archive, dest_dir = Path(archive), Path(dest_dir)
    name = archive.name.lower()
    with atomic_path(dest_dir) as tmp:
        tmp.mkdir()
        try:
            if name.endswith((".tar.gz", ".tgz", ".tar")):
                with tarfile.open(archive, "r:*") as tf:
                    _extract_tar(tf, tmp)
            elif name.endswith(".zip"):
                with zipfile.ZipFile(archive) as zf:
                    zf.extractall(tmp)  # zipfile drops absolute paths and ".." itself
            elif name.endswith(".gz"):
                with gzip.open(archive, "rb") as src, open(tmp / archive.name[:-3], "wb") as dst:
                    shutil.copyfileobj(src, dst, CHUNK_SIZE)
            else:
                raise InputError(archive, "unsupported archive type "
                                          "(expected .tar.gz, .tgz, .tar, .zip or .gz)")
        except (tarfile.TarError, zipfile.BadZipFile, gzip.BadGzipFile, EOFError) as exc:
            raise InputError(archive, f"cannot extract: {exc}") from exc
    return dest_dir


def _extract_tar(tf: tarfile.TarFile, dest: Path) -> None:
    if hasattr(tarfile, "data_filter"):  # Python >= 3.11.4 / 3.10.12
        tf.extractall(dest, filter="data")
        return
    # Older Pythons: refuse members that would land outside dest.
    root = dest.resolve()
    for member in tf.getmembers():
        target = (dest / member.name).resolve()
        outside = target != root and root not in target.parents
        if outside or member.issym() or member.islnk():
            raise tarfile.TarError(f"unsafe member {member.name!r}")
    tf.extractall(dest)


# --------------------------------------------------------------------------------------
# Normalizing MS MARCO into the local layout
# --------------------------------------------------------------------------------------

_CLEAN = str.maketrans({"\t": " ", "\n": " ", "\r": " "})


def _clean(text: str) -> str:
    """Make a field safe for one-record-per-line TSV."""
    return text.translate(_CLEAN)


def _id_text_row(what: str) -> Callable[[str], str]:
    def row(line: str) -> str:
        key, sep, text = line.partition("\t")
        if not sep or not key.strip():
            raise ValueError(f"expected '{what}<TAB>text'")
        return f"{key.strip()}\t{_clean(text)}"
    return row


_passage_row = _id_text_row("pid")
_query_row = _id_text_row("qid")


def _doc_row(line: str) -> str:
    """msmarco-docs.tsv: docid, url, title, body."""
    fields = line.split("\t", 3)
    if len(fields) < 2 or not fields[0].strip():
        raise ValueError("expected 'docid<TAB>url<TAB>title<TAB>body'")
    # Missing trailing fields mean an empty title/body; keep the document.
    fields += [""] * (4 - len(fields))
    docid, url, title, body = fields
    return "\t".join((docid.strip(), _clean(url), _clean(title), _clean(body)))


def _qrels_row(line: str) -> str:
    """TREC qrels 'qid iter docid rel', tab- (MS MARCO) or space- (NIST) separated."""
    fields = line.split()
    if len(fields) != 4:
        raise ValueError(f"expected 4 columns 'qid iter docid rel', found {len(fields)}")
    qid, _, docid, rel = fields
    try:
        int(rel)
    except ValueError:
        raise ValueError(f"relevance {rel!r} is not an integer") from None
    return f"{qid}\t0\t{docid}\t{rel}"


def _top1000_row(line: str) -> str:
    """MS MARCO top1000 files: qid<TAB>pid<TAB>query<TAB>passage."""
    fields = line.split("\t", 2)
    if len(fields) < 2 or not fields[0].strip() or not fields[1].strip():
        raise ValueError("expected 'qid<TAB>pid<TAB>query<TAB>passage'")
    return f"{fields[0].strip()}\t{fields[1].strip()}"


def _trec_run_row(line: str) -> str:
    """TREC run 'qid Q0 docid rank score runname' (the MS MARCO doc top100 files)."""
    fields = line.split()
    if len(fields) != 6:
        raise ValueError(
            f"expected TREC run 'qid Q0 docid rank score run' (6 columns), found {len(fields)}")
    return f"{fields[0]}\t{fields[2]}"


@dataclass(frozen=True)
class _Source:
    """Where an output comes from: a table entry, optionally a member of that archive.

    ``fallback`` names a table entry to download instead when the archive lacks
    ``member``.
    """

    key: str
    member: str | None = None
    fallback: str | None = None


_PLANS: dict[str, list[tuple[str, _Source, Callable[[str], str]]]] = {
    # The dev split is ANCE's: the 6,980-query "dev.small" set, whose candidates are top1000.dev.
    "msmarco-passage": [
        ("collection.tsv", _Source("collectionandqueries", "collection.tsv"), _passage_row),
        ("queries.train.tsv", _Source("collectionandqueries", "queries.train.tsv"), _query_row),
        ("qrels.train.tsv",
         _Source("collectionandqueries", "qrels.train.tsv", fallback="qrels.train"), _qrels_row),
        ("queries.dev.tsv", _Source("collectionandqueries", "queries.dev.small.tsv"), _query_row),
        ("qrels.dev.tsv", _Source("collectionandqueries", "qrels.dev.small.tsv"), _qrels_row),
        ("candidates.dev.tsv", _Source("top1000.dev", "top1000.dev"), _top1000_row),
        ("queries.dl19.tsv", _Source("dl19.queries"), _query_row),
        ("qrels.dl19.tsv", _Source("dl19.qrels"), _qrels_row),
        ("candidates.dl19.tsv", _Source("dl19.top1000"), _top1000_row),
        ("queries.dl20.tsv", _Source("dl20.queries"), _query_row),
        ("qrels.dl20.tsv", _Source("dl20.qrels"), _qrels_row),
        ("candidates.dl20.tsv", _Source("dl20.top1000"), _top1000_row),
    ],
    "msmarco-doc": [
        ("collection.tsv", _Source("docs"), _doc_row),
        ("queries.train.tsv", _Source("train.queries"), _query_row),
        ("qrels.train.tsv", _Source("train.qrels"), _qrels_row),
        ("queries.dev.tsv", _Source("dev.queries"), _query_row),
        ("qrels.dev.tsv", _Source("dev.qrels"), _qrels_row),
        ("candidates.dev.tsv", _Source("dev.top100"), _trec_run_row),
        ("queries.dl19.tsv", _Source("dl19.queries"), _query_row),
        ("qrels.dl19.tsv", _Source("dl19.qrels"), _qrels_row),
        ("candidates.dl19.tsv", _Source("dl19.top100"), _trec_run_row),
        ("queries.dl20.tsv", _Source("dl20.queries"), _query_row),
        ("qrels.dl20.tsv", _Source("dl20.qrels"), _qrels_row),
        ("candidates.dl20.tsv", _Source("dl20.top100"), _trec_run_row),
    ],
}


def fetch_msmarco(
    kind: str,
    out_dir: str | Path,
    *,
    base_url: str = MSMARCO_BASE_URL,
    nist_base_url: str = NIST_BASE_URL,
    cache_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Download MS MARCO ``kind`` ("msmarco-passage" or "msmarco-doc") into ``out_dir``.

    Source files go to ``cache_dir`` (default ``out_dir/"raw"``) and are reused on later
    calls when their md5 still matches.  ``out_dir`` is then written in the local layout
    described in the module docstring, built in a temporary folder and renamed into
    place, so it either is complete or does not change.  ``out_dir`` is owned by this
    function: other files in it are removed (a cache inside it is kept).

    Splits: ``train``; ``dev`` (passage: queries/qrels ``dev.small`` + ``top1000.dev``;
    doc: ``docdev`` + ``docdev-top100``); ``dl19`` and ``dl20`` (TREC DL 2019 / 2020 queries,
    NIST qrels and the official top1000/top100 candidates; all 200 queries are kept, 43 / 54
    (passage) and 43 / 45 (document) are judged).
    """
    if kind not in _PLANS:
        raise ValueError(f"unknown MS MARCO kind {kind!r}; expected one of {sorted(_PLANS)}")
    table = MSMARCO_FILES[kind]
    out_dir = Path(out_dir)
    cache = Path(cache_dir) if cache_dir is not None else out_dir / "raw"
    plan = _PLANS[kind]

    def fetch(key: str) -> Path:
        remote = table[key]
        return download_file(remote.url(base_url, nist_base_url),
                             cache / Path(remote.path).name, md5=remote.md5,
                             progress=progress)

    # Download everything first: a network failure should happen before hours of
    # conversion, not after.
    fetched = {key: fetch(key) for key in dict.fromkeys(src.key for _, src, _ in plan)}
    sources = [(name, _resolve(src, fetched, cache, fetch), row) for name, src, row in plan]

    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for name, path, row in sources:
            _convert(path, tmp / name, row, progress=progress)
        _adopt_cache(cache, out_dir, tmp)  # last step: nothing can fail after it
    return out_dir


def _resolve(src: _Source, fetched: Mapping[str, Path], cache: Path,
             fetch: Callable[[str], Path]) -> Path:
    """The local file an output is converted from (extracting archives once)."""
    path = fetched[src.key]
    if src.member is None:
        return path
    unpacked = cache / (path.name.split(".tar")[0] if ".tar" in path.name else path.stem)
    # extract() is atomic, so an existing folder is complete; re-extract if the archive
    # was downloaded again since.
    if not unpacked.is_dir() or unpacked.stat().st_mtime < path.stat().st_mtime:
        extract(path, unpacked)
    found = sorted(unpacked.rglob(src.member))
    if found:
        return found[0]
    if src.fallback is not None:
        return fetch(src.fallback)
    raise InputError(path, f"archive has no member {src.member!r}")


def _open_text(path: Path):
    # newline="\n": only LF ends a record; a stray CR inside a field must not split it.
    # errors="replace": one undecodable byte should not abort a 22 GB conversion.
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", errors="replace", newline="\n")
    return open(path, encoding="utf-8", errors="replace", newline="\n")


def _convert(src: Path, dst: Path, row: Callable[[str], str], *, progress: bool) -> None:
    """Stream ``src`` line by line through ``row`` into ``dst``; skip blank lines."""
    with _open_text(src) as fin, open(dst, "w", encoding="utf-8", newline="\n",
                                      buffering=CHUNK_SIZE) as fout, \
            tqdm(desc=dst.name, unit=" lines", unit_scale=True, disable=not progress,
                 leave=False) as bar:
        pending = 0
        for lineno, raw in enumerate(fin, 1):
            line = raw.rstrip("\r\n")
            if not line.strip():
                continue
            try:
                fout.write(row(line) + "\n")
            except ValueError as exc:
                raise InputError(src, str(exc), line=lineno) from None
            pending += 1
            if pending == 65536:  # tqdm per line would dominate the run time
                bar.update(pending)
                pending = 0
        bar.update(pending)


def _adopt_cache(cache: Path, out_dir: Path, tmp: Path) -> None:
    """Move a cache folder living inside ``out_dir`` into the new ``out_dir`` (``tmp``).

    ``atomic_path`` replaces ``out_dir`` wholesale; without this the downloads (GBs)
    would be deleted along with the old folder.
    """
    try:
        rel = cache.resolve().relative_to(out_dir.resolve())
    except ValueError:
        return
    if cache.exists():
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(cache, target)


# --------------------------------------------------------------------------------------
# BEIR
# --------------------------------------------------------------------------------------


def fetch_beir(
    name: str,
    out_dir: str | Path,
    *,
    base_url: str = BEIR_BASE_URL,
    progress: bool = True,
    md5: str | None = None,
) -> Path:
    """Download ``<base_url>/<name>.zip`` and unpack it so that ``out_dir`` holds
    ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/``; return ``out_dir``.

    BEIR zips wrap everything in a top-level ``<name>/`` folder; its contents are moved
    up into ``out_dir``.  ``md5`` defaults to the ir_datasets checksum for the standard
    BEIR names (:data:`BEIR_MD5`), no check for other names.  The zip is kept in
    ``out_dir/raw/``; ``out_dir`` is replaced atomically like in :func:`fetch_msmarco`.
    """
    out_dir = Path(out_dir)
    cache = out_dir / "raw"
    url = base_url.rstrip("/") + "/" + urllib.parse.quote(name) + ".zip"
    archive = download_file(url, cache / f"{name}.zip", md5=md5 or BEIR_MD5.get(name),
                            progress=progress)
    with atomic_path(out_dir) as tmp:
        staging = extract(archive, tmp / ".unpacked")
        corpora = sorted(staging.rglob("corpus.jsonl"), key=lambda p: len(p.parts))
        if not corpora:
            raise InputError(archive, "no corpus.jsonl in the archive")
        for item in corpora[0].parent.iterdir():
            os.replace(item, tmp / item.name)
        shutil.rmtree(staging)
        _adopt_cache(cache, out_dir, tmp)
    return out_dir


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def main(argv: Iterable[str] | None = None) -> int:
    """``python -m anceflow.download {msmarco-passage,msmarco-doc,beir} OUT [...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m anceflow.download",
        description="Download MS MARCO (normalized to the local layout) or a BEIR dataset.")
    parser.add_argument("dataset", choices=["msmarco-passage", "msmarco-doc", "beir"])
    parser.add_argument("out", type=Path, help="output folder")
    parser.add_argument("--base-url", help=f"mirror base URL (MS MARCO default "
                                           f"{MSMARCO_BASE_URL}; BEIR default {BEIR_BASE_URL})")
    parser.add_argument("--nist-base-url", default=NIST_BASE_URL,
                        help="base URL of the TREC DL qrels (default %(default)s)")
    parser.add_argument("--cache-dir", type=Path,
                        help="where MS MARCO source files go (default OUT/raw)")
    parser.add_argument("--name", help="BEIR dataset name, e.g. scifact (beir only)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args(None if argv is None else list(argv))
    progress = not args.no_progress
    try:
        if args.dataset == "beir":
            if not args.name:
                parser.error("beir needs --name")
            path = fetch_beir(args.name, args.out, base_url=args.base_url or BEIR_BASE_URL,
                              progress=progress)
        else:
            path = fetch_msmarco(args.dataset, args.out,
                                 base_url=args.base_url or MSMARCO_BASE_URL,
                                 nist_base_url=args.nist_base_url, cache_dir=args.cache_dir,
                                 progress=progress)
    except (DownloadError, InputError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
